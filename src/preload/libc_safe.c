/* libc_safe.c — libc calls that the runtime inside liblethe.so must make without touching
 * the program's heap.
 *
 * Runtime threads share libc's global state with the program, and some of that state lives
 * in memory the program allocated after start-up, that is, in the region: gettext's domain
 * bindings (bindtextdomain) and translation cache, locale data loaded by setlocale. A vCPU
 * or the rebalancer that touched it while holding a shard lock would fault on the region
 * and wait for a vCPU that waits for that lock. So, for code inside this library only:
 *  - strerror is replaced by a hidden definition that returns glibc's untranslated
 *    description (strerrordesc_np: a table lookup, no gettext). Hidden: the program's own
 *    strerror is untouched;
 *  - runtime threads run in the "C" locale object (uselocale in the pthread_create wrapper),
 *    whose data is static, so formatting never reads locale data the program loaded.
 *
 * And for the program: setlocale, newlocale and duplocale allocate the locale data they load
 * outside the region (arena 0). glibc reads the global locale's ctype data at the start of
 * every new thread (__ctype_init in start_thread) while all signals are still blocked; under
 * signal delivery a swapped-out page there raised a SIGBUS the kernel could only deliver with
 * its default action. Python sets the locale at start-up, and one program thread started
 * after the data had gone cold killed the process ("Bus error").
 */
#define _GNU_SOURCE
#include <locale.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "preload/preload.h"

static __thread char unknown_error[40];

__attribute__((visibility("hidden"))) char *strerror(int errnum)
{
    const char *d = strerrordesc_np(errnum);
    if (d)
        return (char *)d;
    snprintf(unknown_error, sizeof(unknown_error), "Unknown error %d", errnum);
    return unknown_error;
}

static locale_t c_locale;

void libc_safe_init(void)
{
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

void libc_safe_enter_runtime_thread(void)
{
    if (c_locale)
        uselocale(c_locale);
}

typedef char *(*setlocale_fn)(int, const char *);
typedef locale_t (*newlocale_fn)(int, const char *, locale_t);
typedef locale_t (*duplocale_fn)(locale_t);

PRELOAD_REAL(setlocale, setlocale_fn)
PRELOAD_REAL(newlocale, newlocale_fn)
PRELOAD_REAL(duplocale, duplocale_fn)

char *setlocale(int category, const char *locale)
{
    if (!locale) /* a query loads nothing */
        return get_setlocale()(category, locale);
    unsigned saved = heap_outside_begin();
    char *rc = get_setlocale()(category, locale);
    heap_outside_end(saved);
    return rc;
}

locale_t newlocale(int mask, const char *locale, locale_t base)
{
    unsigned saved = heap_outside_begin();
    locale_t rc = get_newlocale()(mask, locale, base);
    heap_outside_end(saved);
    return rc;
}

locale_t duplocale(locale_t base)
{
    unsigned saved = heap_outside_begin();
    locale_t rc = get_duplocale()(base);
    heap_outside_end(saved);
    return rc;
}
