/* zipf.c — the Zipfian generator of Gray et al. (see zipf.h for the contract).
 *
 * With zetan = zeta(n, theta), alpha = 1/(1-theta) and
 *     eta = (1 - (2/n)^(1-theta)) / (1 - zeta(2, theta) / zetan),
 * a uniform u gives rank 0 when u*zetan < 1, rank 1 when u*zetan < 1 + 0.5^theta, and
 * otherwise floor(n * (eta*u - eta + 1)^alpha). The first two ranks are exact; the rest
 * follow the continuous approximation of the paper, which is what YCSB draws too.
 */
#include "zipf.h"

#include <errno.h>
#include <math.h>

#define ZETA_EXACT_TERMS (1u << 20)

double bench_zeta_exact(uint64_t n, double theta)
{
    double sum = 0.0;
    /* smallest terms first: less rounding error */
    for (uint64_t i = n; i >= 1; i--)
        sum += pow((double)i, -theta);
    return sum;
}

/* sum_{i=a..b} i^-theta by Euler-Maclaurin with two correction terms. */
static double zeta_tail(double a, double b, double theta)
{
    double one = 1.0 - theta;
    double integral = (pow(b, one) - pow(a, one)) / one;
    double ends = (pow(a, -theta) + pow(b, -theta)) / 2.0;
    /* f'(x) = -theta x^(-theta-1); f'''(x) = -theta(theta+1)(theta+2) x^(-theta-3) */
    double d1 = -theta * (pow(b, -theta - 1.0) - pow(a, -theta - 1.0));
    double d3 =
        -theta * (theta + 1.0) * (theta + 2.0) * (pow(b, -theta - 3.0) - pow(a, -theta - 3.0));
    return integral + ends + d1 / 12.0 - d3 / 720.0;
}

double bench_zeta(uint64_t n, double theta)
{
    if (n <= ZETA_EXACT_TERMS)
        return bench_zeta_exact(n, theta);
    return bench_zeta_exact(ZETA_EXACT_TERMS - 1, theta) +
           zeta_tail((double)ZETA_EXACT_TERMS, (double)n, theta);
}

int bench_zipf_init(struct bench_zipf *z, uint64_t n, double theta)
{
    if (n == 0 || !(theta > 0.0 && theta < 1.0))
        return -EINVAL;
    z->n = n;
    z->theta = theta;
    z->alpha = 1.0 / (1.0 - theta);
    z->zetan = bench_zeta(n, theta);
    double zeta2 = 1.0 + pow(2.0, -theta);
    z->eta = n > 1 ? (1.0 - pow(2.0 / (double)n, 1.0 - theta)) / (1.0 - zeta2 / z->zetan) : 0.0;
    z->second_bound = 1.0 + pow(0.5, theta);
    return 0;
}

uint64_t bench_zipf_rank(const struct bench_zipf *z, double u)
{
    double uz = u * z->zetan;
    if (uz < 1.0 || z->n == 1)
        return 0;
    if (uz < z->second_bound || z->n == 2)
        return 1;
    uint64_t rank = (uint64_t)((double)z->n * pow(z->eta * u - z->eta + 1.0, z->alpha));
    return rank < z->n ? rank : z->n - 1;
}
