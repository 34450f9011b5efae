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
 */
#define _GNU_SOURCE
#include <locale.h>
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
