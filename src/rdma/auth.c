/* auth.c — SHA-256 and HMAC-SHA256 written from FIPS 180-4 and RFC 2104, the proofs of the
 * memory node's challenge-response, and the token file. See auth.h.
 * Small rather than fast: it hashes a few hundred bytes per connection. */
#include "rdma/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

static const uint32_t sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static inline uint32_t rotr(uint32_t x, unsigned n)
{
    return (x >> n) | (x << (32 - n));
}

static void sha256_block(uint32_t h[8], const uint8_t *p)
{
    uint32_t w[64];
    for (unsigned t = 0; t < 16; t++)
        w[t] = (uint32_t)p[4 * t] << 24 | (uint32_t)p[4 * t + 1] << 16 |
               (uint32_t)p[4 * t + 2] << 8 | (uint32_t)p[4 * t + 3];
    for (unsigned t = 16; t < 64; t++) {
        uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
        uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
        w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (unsigned t = 0; t < 64; t++) {
        uint32_t t1 = k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) +
                      sha256_k[t] + w[t];
        uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += k;
}

void lethe_sha256_init(struct lethe_sha256 *s)
{
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, iv, sizeof(iv));
    s->bytes = 0;
    s->fill = 0;
}

void lethe_sha256_update(struct lethe_sha256 *s, const void *data, size_t len)
{
    const uint8_t *p = data;
    s->bytes += len;
    if (s->fill) {
        size_t take = 64 - s->fill < len ? 64 - s->fill : len;
        memcpy(s->block + s->fill, p, take);
        s->fill += (unsigned)take;
        p += take;
        len -= take;
        if (s->fill < 64)
            return;
        sha256_block(s->h, s->block);
        s->fill = 0;
    }
    for (; len >= 64; p += 64, len -= 64)
        sha256_block(s->h, p);
    memcpy(s->block, p, len);
    s->fill = (unsigned)len;
}

void lethe_sha256_final(struct lethe_sha256 *s, uint8_t out[LETHE_SHA256_LEN])
{
    uint64_t bits = s->bytes * 8;
    s->block[s->fill++] = 0x80;
    if (s->fill > 56) {
        memset(s->block + s->fill, 0, 64 - s->fill);
        sha256_block(s->h, s->block);
        s->fill = 0;
    }
    memset(s->block + s->fill, 0, 56 - s->fill);
    for (unsigned i = 0; i < 8; i++)
        s->block[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
    sha256_block(s->h, s->block);
    for (unsigned i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(s->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)s->h[i];
    }
    memset(s, 0, sizeof(*s));
}

void lethe_sha256(const void *data, size_t len, uint8_t out[LETHE_SHA256_LEN])
{
    struct lethe_sha256 s;
    lethe_sha256_init(&s);
    lethe_sha256_update(&s, data, len);
    lethe_sha256_final(&s, out);
}

void lethe_hmac_init(struct lethe_hmac *h, const void *key, size_t keylen)
{
    uint8_t k[64] = {0}, pad[64];
    if (keylen > sizeof(k))
        lethe_sha256(key, keylen, k);
    else if (keylen)
        memcpy(k, key, keylen);
    for (unsigned i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x36;
    lethe_sha256_init(&h->inner);
    lethe_sha256_update(&h->inner, pad, sizeof(pad));
    for (unsigned i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x5c;
    lethe_sha256_init(&h->outer);
    lethe_sha256_update(&h->outer, pad, sizeof(pad));
    memset(k, 0, sizeof(k));
    memset(pad, 0, sizeof(pad));
}

void lethe_hmac_update(struct lethe_hmac *h, const void *data, size_t len)
{
    lethe_sha256_update(&h->inner, data, len);
}

void lethe_hmac_final(struct lethe_hmac *h, uint8_t out[LETHE_MAC_LEN])
{
    uint8_t inner[LETHE_SHA256_LEN];
    lethe_sha256_final(&h->inner, inner);
    lethe_sha256_update(&h->outer, inner, sizeof(inner));
    lethe_sha256_final(&h->outer, out);
}

void lethe_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
                       uint8_t out[LETHE_MAC_LEN])
{
    struct lethe_hmac h;
    lethe_hmac_init(&h, key, keylen);
    lethe_hmac_update(&h, data, len);
    lethe_hmac_final(&h, out);
}

bool lethe_ct_equal(const void *a, const void *b, size_t n)
{
    const volatile uint8_t *x = a, *y = b;
    uint8_t diff = 0;
    for (size_t i = 0; i < n; i++)
        diff |= x[i] ^ y[i];
    return diff == 0;
}

int lethe_random_bytes(void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (unsigned i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void token_proof(const char *label, const char *token, const uint8_t *ns, const uint8_t *nc,
                        uint8_t *out)
{
    struct lethe_hmac h;
    lethe_hmac_init(&h, token, strlen(token));
    lethe_hmac_update(&h, label, strlen(label));
    lethe_hmac_update(&h, ns, LETHE_NONCE_LEN);
    lethe_hmac_update(&h, nc, LETHE_NONCE_LEN);
    lethe_hmac_final(&h, out);
}

void lethe_auth_client_proof(const char *token, const uint8_t ns[LETHE_NONCE_LEN],
                             const uint8_t nc[LETHE_NONCE_LEN], uint8_t out[LETHE_MAC_LEN])
{
    token_proof("lethe-auth-client-v1", token, ns, nc, out);
}

void lethe_auth_node_proof(const char *token, const uint8_t ns[LETHE_NONCE_LEN],
                           const uint8_t nc[LETHE_NONCE_LEN], uint8_t out[LETHE_MAC_LEN])
{
    token_proof("lethe-auth-node-v1", token, ns, nc, out);
}

void lethe_auth_attach_proof(const uint8_t key[LETHE_REGION_KEY_LEN], uint64_t region_id,
                             const uint8_t ns[LETHE_NONCE_LEN], const uint8_t nc[LETHE_NONCE_LEN],
                             uint8_t out[LETHE_MAC_LEN])
{
    static const char label[] = "lethe-attach-v1";
    uint8_t id[8];
    put_le64(id, region_id);
    struct lethe_hmac h;
    lethe_hmac_init(&h, key, LETHE_REGION_KEY_LEN);
    lethe_hmac_update(&h, label, sizeof(label) - 1);
    lethe_hmac_update(&h, id, sizeof(id));
    lethe_hmac_update(&h, ns, LETHE_NONCE_LEN);
    lethe_hmac_update(&h, nc, LETHE_NONCE_LEN);
    lethe_hmac_final(&h, out);
}

void lethe_auth_verbs_proof(const uint8_t key[LETHE_REGION_KEY_LEN], uint64_t region_id,
                            uint64_t seq, uint8_t out[LETHE_MAC_LEN])
{
    static const char label[] = "lethe-verbs-v1";
    uint8_t buf[16];
    put_le64(buf, region_id);
    put_le64(buf + 8, seq);
    struct lethe_hmac h;
    lethe_hmac_init(&h, key, LETHE_REGION_KEY_LEN);
    lethe_hmac_update(&h, label, sizeof(label) - 1);
    lethe_hmac_update(&h, buf, sizeof(buf));
    lethe_hmac_final(&h, out);
}

static int token_create(const char *path, char *err, size_t errlen)
{
    uint8_t raw[32];
    char text[2 * sizeof(raw) + 2];
    int rc = lethe_random_bytes(raw, sizeof(raw));
    if (rc < 0) {
        snprintf(err, errlen, "getrandom: %s", strerror(-rc));
        return rc;
    }
    for (unsigned i = 0; i < sizeof(raw); i++)
        snprintf(text + 2 * i, 3, "%02x", raw[i]);
    text[2 * sizeof(raw)] = '\n';
    text[2 * sizeof(raw) + 1] = '\0';
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot create: %s", strerror(errno));
        return rc;
    }
    size_t len = strlen(text);
    ssize_t w = write(fd, text, len);
    if (w != (ssize_t)len || fsync(fd) < 0) {
        rc = w < 0 ? -errno : -EIO;
        snprintf(err, errlen, "cannot write: %s", strerror(-rc));
        close(fd);
        unlink(path);
        return rc;
    }
    close(fd);
    memset(raw, 0, sizeof(raw));
    memset(text, 0, sizeof(text));
    return 0;
}

int lethe_token_load(const char *path, bool create, char *token, size_t size, bool *created,
                     char *err, size_t errlen)
{
    if (created)
        *created = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && create) {
        int rc = token_create(path, err, errlen);
        if (rc == -EEXIST) /* someone else created it meanwhile: read theirs */
            rc = 0;
        else if (rc == 0 && created)
            *created = true;
        if (rc < 0)
            return rc;
        fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0) {
        int rc = -errno;
        snprintf(err, errlen, "cannot open: %s", strerror(errno));
        return rc;
    }
    char buf[LETHE_TOKEN_MAX + 3];
    size_t len = 0;
    for (;;) {
        ssize_t got = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            int rc = -errno;
            snprintf(err, errlen, "cannot read: %s", strerror(errno));
            close(fd);
            return rc;
        }
        if (got == 0 || len + (size_t)got == sizeof(buf) - 1) {
            len += (size_t)got;
            break;
        }
        len += (size_t)got;
    }
    close(fd);
    buf[len] = '\0';
    if (len && buf[len - 1] == '\n')
        buf[--len] = '\0';
    if (len && buf[len - 1] == '\r')
        buf[--len] = '\0';
    int rc = 0;
    if (len == 0) {
        snprintf(err, errlen, "token file is empty");
        rc = -EINVAL;
    } else if (len > LETHE_TOKEN_MAX || len + 1 > size) {
        snprintf(err, errlen, "token is longer than %d bytes", LETHE_TOKEN_MAX);
        rc = -E2BIG;
    } else if (memchr(buf, '\n', len) || memchr(buf, '\0', len)) {
        snprintf(err, errlen, "token must be one line of text");
        rc = -EINVAL;
    } else {
        memcpy(token, buf, len + 1);
    }
    memset(buf, 0, sizeof(buf));
    return rc;
}
