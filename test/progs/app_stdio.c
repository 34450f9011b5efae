/* app_stdio.c — a program for lethed's tests: stdio streams whose data passes through the
 * heap while the heap is swapped.
 *
 *   app_stdio MIB DIR [SECTION]
 *
 * Between two uses of each stream it churns MIB MiB of fresh memory (filled and checked
 * twice), so that under Lethe with a smaller cache every page it touched before — its stream buffers,
 * its own data buffers — has gone cold and, unless kept elsewhere, been evicted. Then:
 *  - stdout: one line printed before the churn, flushed after it;
 *  - a FILE written line by line (3000-byte lines) with a churn after each, closed, read
 *    back with fgets with a churn after each line;
 *  - fwrite of a 2 MiB heap buffer that went cold, fread of it into a fresh (never touched)
 *    heap buffer, compared;
 *  - fputs of a 192 KiB heap string that went cold, read back, compared;
 *  - a 192 KiB heap string that went cold, formatted with fprintf, vfprintf and dprintf (one
 *    item far longer than a stream's buffer), each file read back and compared;
 *  - 4 threads each fwrite 8 records of 96 KiB from cold heap buffers to one stream: every
 *    record must read back whole (an fwrite is one operation on the stream, even when
 *    carried out piece by piece);
 *  - a directory of 2000 files listed with readdir, a churn after every 500 entries: every
 *    file must be seen once (the DIR's buffer, where getdents writes, is heap memory).
 * With a SECTION (lines, blocks, string, formatted, records, directory) it does only stdout
 * and that section (the fortified build's test runs "formatted": its printf calls are glibc's
 * __printf_chk family). Every result is checked: a short count, a stream error or different
 * data prints what went wrong to stderr and exits 1. The output on stdout is the same with
 * and without Lethe.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define BIG      (2u << 20)
#define STR      (192u << 10)
#define CHUNK    (1u << 20)
#define LINES    4
#define WRITERS  4
#define RECORDS  8
#define RECORD   (96u << 10)
#define ENTRIES  2000
#define LINE_LEN 3000

static size_t churn_mib;

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static _Noreturn void die(const char *what)
{
    fprintf(stderr, "app_stdio: %s (errno %d: %s)\n", what, errno, strerror(errno));
    exit(1);
}

/* Fills churn_mib MiB of fresh memory, checks it twice and unmaps it. A fresh mapping each
 * time (under Lethe a fresh region extent, its pages new to the cache): freed and reused heap
 * blocks would come back as swap-ins, which enter the cache's active list at its cold end and
 * mostly evict each other, leaving the program's other pages where they are. */
static void churn(uint64_t seed)
{
    size_t len = churn_mib * CHUNK;
    unsigned char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        die("mmap of the churn area failed");
    for (size_t j = 0; j < len; j += 512)
        m[j] = (unsigned char)mix(seed + j);
    for (int round = 0; round < 2; round++)
        for (size_t j = 0; j < len; j += 512)
            if (m[j] != (unsigned char)mix(seed + j))
                die("churn area corrupt");
    munmap(m, len);
}

static void fill(unsigned char *p, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)mix(seed + i / 8) ^ (unsigned char)i;
}

static char *path_in(const char *dir, const char *name)
{
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    if (!p)
        die("malloc of a path failed");
    sprintf(p, "%s/%s", dir, name);
    return p;
}

/* Line i of the text file: LINE_LEN letters, then a newline. */
static void make_line(char *buf, unsigned i)
{
    for (unsigned j = 0; j < LINE_LEN; j++)
        buf[j] = (char)('a' + mix(i * 7919u + j) % 26);
    buf[LINE_LEN] = '\n';
    buf[LINE_LEN + 1] = '\0';
}

static void lines(const char *dir)
{
    char *path = path_in(dir, "lines.txt");
    char *line = malloc(LINE_LEN + 2), *want = malloc(LINE_LEN + 2);
    if (!line || !want)
        die("malloc of the line buffers failed");
    FILE *f = fopen(path, "w");
    if (!f)
        die("fopen for writing failed");
    /* lines shorter than the stream's buffer, each left in it while the heap churns */
    for (unsigned i = 0; i < LINES; i++) {
        make_line(line, i);
        if (fputs(line, f) == EOF)
            die("fputs of a line failed");
        churn(10 + i);
    }
    if (fclose(f) != 0)
        die("fclose of the written file failed");
    f = fopen(path, "r");
    if (!f)
        die("fopen for reading failed");
    /* each line but the first is read partly from the stream's buffer, partly by a read()
     * into it after the churn */
    for (unsigned i = 0; i < LINES; i++) {
        make_line(want, i);
        if (!fgets(line, LINE_LEN + 2, f) || strcmp(line, want) != 0)
            die("a line did not read back");
        churn(20 + i);
    }
    if (fgets(line, LINE_LEN + 2, f) || ferror(f))
        die("the file did not end after its lines");
    fclose(f);
    printf("lines ok\n");
    free(want);
    free(line);
    free(path);
}

static void blocks(const char *dir)
{
    char *path = path_in(dir, "block.bin");
    unsigned char *out = malloc(BIG), *in = malloc(BIG);
    if (!out || !in)
        die("malloc of the block buffers failed");
    fill(out, BIG, 7);
    churn(4);
    FILE *f = fopen(path, "w");
    if (!f)
        die("fopen of the block file failed");
    size_t n = fwrite(out, 1, BIG, f);
    if (n != BIG || ferror(f))
        die("fwrite of a cold heap buffer came up short");
    if (fclose(f) != 0)
        die("fclose of the block file failed");
    churn(5);
    f = fopen(path, "r");
    if (!f)
        die("fopen of the block file for reading failed");
    n = fread(in, 1, BIG, f);
    if (n != BIG || ferror(f))
        die("fread into a fresh heap buffer came up short");
    fclose(f);
    if (memcmp(in, out, BIG) != 0)
        die("the block read back differs");
    uint64_t sum = 0;
    for (size_t i = 0; i < BIG; i += 4096)
        sum = mix(sum ^ in[i]);
    printf("blocks ok %016llx\n", (unsigned long long)sum);
    free(in);
    free(out);
    free(path);
}

static void long_string(const char *dir)
{
    char *path = path_in(dir, "string.txt");
    char *s = malloc(STR + 1);
    if (!s)
        die("malloc of the string failed");
    for (size_t i = 0; i < STR; i++)
        s[i] = (char)('a' + mix(i) % 26);
    s[STR] = '\0';
    churn(6);
    FILE *f = fopen(path, "w");
    if (!f)
        die("fopen of the string file failed");
    if (fputs(s, f) == EOF)
        die("fputs of a cold heap string failed");
    if (fclose(f) != 0)
        die("fclose of the string file failed");
    f = fopen(path, "r");
    char *back = malloc(STR + 1);
    if (!f || !back)
        die("reading the string back could not start");
    size_t n = fread(back, 1, STR + 1, f);
    fclose(f);
    if (n != STR || memcmp(back, s, STR) != 0)
        die("the string read back differs");
    printf("string ok\n");
    free(back);
    free(s);
    free(path);
}

/* fprintf through vfprintf, as a program's own printf-like helper does it. */
static int formatted_v(FILE *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vfprintf(f, fmt, ap);
    va_end(ap);
    return n;
}

/* Reads path back: it must hold exactly the lines "<s|i>" for i = 0 .. lines-1. */
static void check_formatted(const char *path, const char *s, int lines)
{
    FILE *f = fopen(path, "r");
    char *back = malloc(STR + 64), *want = malloc(STR + 64);
    if (!f || !back || !want)
        die("reading formatted output back could not start");
    for (int i = 0; i < lines; i++) {
        int len = snprintf(want, STR + 64, "<%s|%d>\n", s, i);
        if (fread(back, 1, (size_t)len, f) != (size_t)len || memcmp(back, want, (size_t)len) != 0)
            die("formatted output read back differs");
    }
    if (fread(back, 1, 1, f) != 0)
        die("formatted output is longer than written");
    fclose(f);
    free(want);
    free(back);
}

/* A cold heap string as one formatted item, far longer than the stream's buffer: glibc
 * writes such an item from the program's memory straight to the file. */
static void formatted(const char *dir)
{
    char *path = path_in(dir, "formatted.txt"), *dpath = path_in(dir, "dprintf.txt");
    char *s = malloc(STR + 1);
    if (!s)
        die("malloc of the formatted string failed");
    for (size_t i = 0; i < STR; i++)
        s[i] = (char)('A' + mix(i + 99) % 26);
    s[STR] = '\0';
    FILE *f = fopen(path, "w");
    if (!f)
        die("fopen of the formatted file failed");
    int want = (int)STR + 5;
    churn(8);
    if (fprintf(f, "<%s|%d>\n", s, 0) != want)
        die("fprintf of a cold heap string came up short");
    churn(9);
    if (formatted_v(f, "<%s|%d>\n", s, 1) != want)
        die("vfprintf of a cold heap string came up short");
    if (fclose(f) != 0)
        die("fclose of the formatted file failed");
    check_formatted(path, s, 2);
    int fd = open(dpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        die("open of the dprintf file failed");
    churn(10);
    if (dprintf(fd, "<%s|%d>\n", s, 0) != want)
        die("dprintf of a cold heap string came up short");
    close(fd);
    check_formatted(dpath, s, 1);
    printf("formatted ok\n");
    free(s);
    free(dpath);
    free(path);
}

struct writer {
    FILE *f;
    unsigned id;
};

/* Record r of writer w: its number in the first 4 bytes, then bytes derived from it. */
static void make_record(unsigned char *p, unsigned number)
{
    memcpy(p, &number, sizeof(number));
    fill(p + sizeof(number), RECORD - sizeof(number), number * 1000003ULL);
}

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    unsigned char *rec[RECORDS];
    for (unsigned r = 0; r < RECORDS; r++) {
        rec[r] = malloc(RECORD);
        if (!rec[r])
            die("malloc of a record failed");
        make_record(rec[r], w->id * RECORDS + r);
    }
    churn(40 + w->id);
    for (unsigned r = 0; r < RECORDS; r++) {
        if (fwrite(rec[r], 1, RECORD, w->f) != RECORD)
            die("fwrite of a record from a thread came up short");
        free(rec[r]);
    }
    return NULL;
}

static void shared_stream(const char *dir)
{
    char *path = path_in(dir, "records.bin");
    FILE *f = fopen(path, "w");
    if (!f)
        die("fopen of the record file failed");
    pthread_t t[WRITERS];
    struct writer w[WRITERS];
    for (unsigned i = 0; i < WRITERS; i++) {
        w[i] = (struct writer){.f = f, .id = i};
        if (pthread_create(&t[i], NULL, writer_main, &w[i]) != 0)
            die("pthread_create failed");
    }
    for (unsigned i = 0; i < WRITERS; i++)
        pthread_join(t[i], NULL);
    if (fclose(f) != 0)
        die("fclose of the record file failed");
    f = fopen(path, "r");
    unsigned char *got = malloc(RECORD), *want = malloc(RECORD);
    unsigned seen[WRITERS * RECORDS] = {0};
    if (!f || !got || !want)
        die("reading the records back could not start");
    for (unsigned r = 0; r < WRITERS * RECORDS; r++) {
        if (fread(got, 1, RECORD, f) != RECORD)
            die("a record did not read back whole");
        unsigned number;
        memcpy(&number, got, sizeof(number));
        if (number >= WRITERS * RECORDS || seen[number]++)
            die("a record's number is wrong or repeated");
        make_record(want, number);
        if (memcmp(got, want, RECORD) != 0)
            die("a record read back differs: fwrites from threads interleaved");
    }
    if (fread(got, 1, 1, f) != 0)
        die("the record file is longer than its records");
    fclose(f);
    printf("records ok\n");
    free(want);
    free(got);
    free(path);
}

static void directory(const char *dir)
{
    char *sub = path_in(dir, "entries");
    if (mkdir(sub, 0700) != 0)
        die("mkdir of the entries directory failed");
    char name[64];
    for (unsigned i = 0; i < ENTRIES; i++) {
        snprintf(name, sizeof(name), "%s/entry-with-a-longish-name-%05u", sub, i);
        int fd = open(name, O_WRONLY | O_CREAT | O_EXCL, 0600);
        if (fd < 0)
            die("creating an entry failed");
        close(fd);
    }
    DIR *d = opendir(sub);
    unsigned char *seen = calloc(ENTRIES, 1);
    if (!d || !seen)
        die("opendir of the entries failed");
    unsigned n = 0, others = 0;
    errno = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        unsigned i;
        if (sscanf(e->d_name, "entry-with-a-longish-name-%u", &i) == 1 && i < ENTRIES) {
            if (seen[i]++)
                die("an entry was listed twice");
            if (++n % 500 == 0)
                churn(60 + n);
        } else {
            others++;
        }
        errno = 0;
    }
    if (errno != 0)
        die("readdir failed");
    closedir(d);
    if (n != ENTRIES || others != 2)
        die("readdir did not list every entry once");
    for (unsigned i = 0; i < ENTRIES; i++) {
        snprintf(name, sizeof(name), "%s/entry-with-a-longish-name-%05u", sub, i);
        unlink(name);
    }
    rmdir(sub);
    printf("directory ok %u\n", n);
    free(seen);
    free(sub);
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        void (*run)(const char *dir);
    } sections[] = {{"lines", lines},         {"blocks", blocks},         {"string", long_string},
                    {"formatted", formatted}, {"records", shared_stream}, {"directory", directory}};
    const size_t count = sizeof(sections) / sizeof(sections[0]);
    size_t only = count;
    if (argc == 4)
        for (size_t i = 0; i < count; i++)
            if (strcmp(argv[3], sections[i].name) == 0)
                only = i;
    if (argc != 3 && !(argc == 4 && only < count)) {
        fprintf(stderr, "usage: app_stdio MIB DIR [lines|blocks|string|formatted|records|"
                        "directory]\n");
        return 2;
    }
    churn_mib = strtoull(argv[1], NULL, 10);
    printf("stdout before the churn\n");
    churn(0);
    if (fflush(stdout) != 0)
        die("flushing stdout after the churn failed");
    for (size_t i = 0; i < count; i++)
        if (only == count || only == i)
            sections[i].run(argv[2]);
    printf("done\n");
    if (fflush(stdout) != 0)
        die("the last flush of stdout failed");
    return 0;
}
