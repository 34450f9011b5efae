/* test_units.c — the unit parsers and formatters of config.h: what each accepts, what it
 * rejects (-EINVAL) and where it overflows (-ERANGE). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>

#include "core/config.h"

static uint64_t size_of(const char *s)
{
    uint64_t v = 12345;
    cr_assert_eq(lethe_parse_size(s, &v), 0, "'%s' should parse as a size", s);
    return v;
}

Test(units, size_takes_bytes_and_binary_suffixes)
{
    cr_assert_eq(size_of("0"), 0);
    cr_assert_eq(size_of("4096"), 4096);
    cr_assert_eq(size_of("4K"), 4096);
    cr_assert_eq(size_of("4k"), 4096);
    cr_assert_eq(size_of("512M"), 512ULL << 20);
    cr_assert_eq(size_of("16G"), 16ULL << 30);
    cr_assert_eq(size_of("64T"), 64ULL << 40);
    cr_assert_eq(size_of("18446744073709551615"), UINT64_MAX);
    cr_assert_eq(size_of("16777215T"), 16777215ULL << 40);
}

Test(units, size_rejects_other_text)
{
    static const char *const bad[] = {"",    "K",   "12X",  "-5M",  "+5M",  " 5M", "5M ",
                                      "5 M", "5MB", "5KiB", "1.5G", "0x10", "5MM"};
    uint64_t v = 7;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(lethe_parse_size(bad[i], &v), -EINVAL, "'%s' should be -EINVAL", bad[i]);
    cr_assert_eq(v, 7, "a failed parse leaves the output alone");
}

Test(units, size_overflow_is_erange)
{
    uint64_t v;
    cr_assert_eq(lethe_parse_size("18446744073709551616", &v), -ERANGE);
    cr_assert_eq(lethe_parse_size("16777216T", &v), -ERANGE);
    cr_assert_eq(lethe_parse_size("99999999999999999999999G", &v), -ERANGE);
    /* malformed text is -EINVAL even when its digits overflow */
    cr_assert_eq(lethe_parse_size("99999999999999999999999X", &v), -EINVAL);
}

Test(units, duration_requires_a_unit_except_zero)
{
    uint64_t v;
    cr_assert_eq(lethe_parse_duration("0", &v), 0);
    cr_assert_eq(v, 0);
    cr_assert_eq(lethe_parse_duration("250us", &v), 0);
    cr_assert_eq(v, 250);
    cr_assert_eq(lethe_parse_duration("10ms", &v), 0);
    cr_assert_eq(v, 10000);
    cr_assert_eq(lethe_parse_duration("2s", &v), 0);
    cr_assert_eq(v, 2000000);
    cr_assert_eq(lethe_parse_duration("0ms", &v), 0);
    cr_assert_eq(v, 0);
    static const char *const bad[] = {"10",   "",    "ms",   "10x", "10 ms",
                                      "10MS", "-1s", "1.5s", "10m", "10sec"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(lethe_parse_duration(bad[i], &v), -EINVAL, "'%s' should be -EINVAL", bad[i]);
}

Test(units, duration_overflow_is_erange)
{
    uint64_t v;
    cr_assert_eq(lethe_parse_duration("18446744073709551615us", &v), 0);
    cr_assert_eq(v, UINT64_MAX);
    cr_assert_eq(lethe_parse_duration("18446744073709552s", &v), -ERANGE);
    cr_assert_eq(lethe_parse_duration("99999999999999999999us", &v), -ERANGE);
}

Test(units, percent_takes_an_optional_percent_sign_up_to_100)
{
    unsigned p = 99;
    cr_assert_eq(lethe_parse_percent("0", &p), 0);
    cr_assert_eq(p, 0);
    cr_assert_eq(lethe_parse_percent("20%", &p), 0);
    cr_assert_eq(p, 20);
    cr_assert_eq(lethe_parse_percent("100", &p), 0);
    cr_assert_eq(p, 100);
    cr_assert_eq(lethe_parse_percent("101%", &p), -ERANGE);
    cr_assert_eq(lethe_parse_percent("99999999999999999999999", &p), -ERANGE);
    cr_assert_eq(lethe_parse_percent("abc", &p), -EINVAL);
    cr_assert_eq(lethe_parse_percent("20%%", &p), -EINVAL);
    cr_assert_eq(lethe_parse_percent("%", &p), -EINVAL);
    cr_assert_eq(lethe_parse_percent("-5%", &p), -EINVAL);
    cr_assert_eq(lethe_parse_percent("2.5%", &p), -EINVAL);
    cr_assert_eq(p, 100);
}

Test(units, bool_takes_the_documented_words_in_any_case)
{
    static const char *const yes[] = {"yes", "true", "on", "1", "YES", "True"};
    static const char *const no[] = {"no", "false", "off", "0", "NO", "Off"};
    bool b;
    for (size_t i = 0; i < 6; i++) {
        b = false;
        cr_assert_eq(lethe_parse_bool(yes[i], &b), 0);
        cr_assert(b, "'%s' is true", yes[i]);
        b = true;
        cr_assert_eq(lethe_parse_bool(no[i], &b), 0);
        cr_assert_not(b, "'%s' is false", no[i]);
    }
    cr_assert_eq(lethe_parse_bool("maybe", &b), -EINVAL);
    cr_assert_eq(lethe_parse_bool("", &b), -EINVAL);
    cr_assert_eq(lethe_parse_bool("2", &b), -EINVAL);
}

Test(units, format_size_uses_the_largest_unit_that_divides)
{
    char buf[32];
    struct {
        uint64_t v;
        const char *text;
    } cases[] = {
        {0, "0"},
        {1, "1"},
        {4095, "4095"},
        {4096, "4K"},
        {1536, "1536" /* 1.5K: not a whole number of K */},
        {512ULL << 20, "512M"},
        {16ULL << 30, "16G"},
        {64ULL << 40, "64T"},
        {(1ULL << 30) + 4096, "1048580K"},
        {UINT64_MAX, "18446744073709551615"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        lethe_format_size(cases[i].v, buf, sizeof(buf));
        cr_assert_str_eq(buf, cases[i].text);
        uint64_t back;
        cr_assert_eq(lethe_parse_size(buf, &back), 0);
        cr_assert_eq(back, cases[i].v, "'%s' reads back", buf);
    }
}

Test(units, format_duration_uses_the_largest_unit_that_divides)
{
    char buf[32];
    struct {
        uint64_t v;
        const char *text;
    } cases[] = {
        {0, "0"},         {1, "1us"},        {999, "999us"},  {1000, "1ms"},
        {1500, "1500us"}, {100000, "100ms"}, {2000000, "2s"}, {2500000, "2500ms"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        lethe_format_duration(cases[i].v, buf, sizeof(buf));
        cr_assert_str_eq(buf, cases[i].text);
        uint64_t back;
        cr_assert_eq(lethe_parse_duration(buf, &back), 0);
        cr_assert_eq(back, cases[i].v, "'%s' reads back", buf);
    }
}

Test(units, formatters_truncate_to_the_buffer)
{
    char buf[4];
    lethe_format_size(512ULL << 20, buf, sizeof(buf));
    cr_assert_str_eq(buf, "512");
    lethe_format_duration(2000000, buf, 3);
    cr_assert_str_eq(buf, "2s");
}
