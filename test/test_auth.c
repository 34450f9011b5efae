/* test_auth.c — SHA-256 and HMAC-SHA256 against the published test vectors (FIPS 180-2
 * examples, RFC 4231), the constant-time compare, the proofs of the node's handshake, and
 * the token file (created 0600 when absent, read back, rejected when empty or too long). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rdma/auth.h"

static void hex(const uint8_t *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

static void check_sha(const void *data, size_t len, const char *want)
{
    uint8_t d[LETHE_SHA256_LEN];
    char h[2 * LETHE_SHA256_LEN + 1];
    lethe_sha256(data, len, d);
    hex(d, sizeof(d), h);
    cr_assert_str_eq(h, want, "sha256 of %zu bytes", len);
}

Test(sha256, matches_the_fips_180_examples)
{
    check_sha("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check_sha("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    check_sha(m448, strlen(m448),
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *m896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                       "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    check_sha(m896, strlen(m896),
              "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

Test(sha256, million_a_fed_in_uneven_pieces_gives_the_published_digest)
{
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    struct lethe_sha256 s;
    lethe_sha256_init(&s);
    size_t off = 0, step = 1;
    while (off < 1000000) { /* pieces of 1, 2, 3, ... bytes cross every block boundary */
        size_t n = 1000000 - off < step ? 1000000 - off : step;
        lethe_sha256_update(&s, a + off, n);
        off += n;
        step = step % 131 + 1;
    }
    uint8_t d[32];
    char h[65];
    lethe_sha256_final(&s, d);
    hex(d, 32, h);
    cr_assert_str_eq(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(a);
}

Test(sha256, lengths_around_the_padding_boundary_differ)
{
    /* 55, 56 and 64 bytes take one or two padding blocks; all digests must differ. */
    uint8_t buf[130], d[3][32];
    memset(buf, 'x', sizeof(buf));
    lethe_sha256(buf, 55, d[0]);
    lethe_sha256(buf, 56, d[1]);
    lethe_sha256(buf, 64, d[2]);
    cr_assert(memcmp(d[0], d[1], 32) != 0 && memcmp(d[1], d[2], 32) != 0);
    check_sha(buf, 55, "d5e285683cd4efc02d021a5c62014694958901005d6f71e89e0989fac77e4072");
}

static void check_hmac(const void *key, size_t keylen, const void *data, size_t len,
                       const char *want)
{
    uint8_t mac[32];
    char h[65];
    lethe_hmac_sha256(key, keylen, data, len, mac);
    hex(mac, 32, h);
    cr_assert_eq(strncmp(h, want, strlen(want)), 0, "HMAC: got %s, want %s", h, want);
}

Test(hmac_sha256, matches_rfc_4231_test_cases_1_to_7)
{
    uint8_t k[131], d[50];
    memset(k, 0x0b, 20);
    check_hmac(k, 20, "Hi There", 8,
               "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    check_hmac("Jefe", 4, "what do ya want for nothing?", 28,
               "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    memset(k, 0xaa, 20);
    memset(d, 0xdd, 50);
    check_hmac(k, 20, d, 50, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
    for (int i = 0; i < 25; i++)
        k[i] = (uint8_t)(i + 1);
    memset(d, 0xcd, 50);
    check_hmac(k, 25, d, 50, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
    memset(k, 0x0c, 20);
    check_hmac(k, 20, "Test With Truncation", 20, "a3b6167473100ee06e0c796c2955552b");
    memset(k, 0xaa, 131);
    const char *t6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    check_hmac(k, 131, t6, strlen(t6),
               "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    const char *t7 = "This is a test using a larger than block-size key and a larger than "
                     "block-size data. The key needs to be hashed before being used by the HMAC "
                     "algorithm.";
    check_hmac(k, 131, t7, strlen(t7),
               "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}

Test(hmac_sha256, incremental_updates_equal_one_shot)
{
    const char *msg = "what do ya want for nothing?";
    struct lethe_hmac h;
    uint8_t a[32], b[32];
    lethe_hmac_init(&h, "Jefe", 4);
    for (const char *p = msg; *p; p++)
        lethe_hmac_update(&h, p, 1);
    lethe_hmac_final(&h, a);
    lethe_hmac_sha256("Jefe", 4, msg, strlen(msg), b);
    cr_assert_eq(memcmp(a, b, 32), 0);
}

Test(ct_equal, tells_equal_from_different_at_any_position)
{
    uint8_t a[32], b[32];
    memset(a, 7, 32);
    memcpy(b, a, 32);
    cr_assert(lethe_ct_equal(a, b, 32));
    for (int i = 0; i < 32; i++) {
        b[i] ^= 0x80;
        cr_assert_not(lethe_ct_equal(a, b, 32), "difference at byte %d missed", i);
        b[i] ^= 0x80;
    }
    cr_assert(lethe_ct_equal(a, b, 0));
}

Test(proofs, depend_on_token_nonces_and_role)
{
    uint8_t ns[32], nc[32], p1[32], p2[32], p3[32], p4[32], p5[32];
    cr_assert_eq(lethe_random_bytes(ns, 32), 0);
    cr_assert_eq(lethe_random_bytes(nc, 32), 0);
    lethe_auth_client_proof("secret", ns, nc, p1);
    lethe_auth_client_proof("secret", ns, nc, p2);
    cr_assert_eq(memcmp(p1, p2, 32), 0, "proofs are deterministic");
    lethe_auth_client_proof("secreT", ns, nc, p3);
    cr_assert_neq(memcmp(p1, p3, 32), 0, "another token gives another proof");
    lethe_auth_node_proof("secret", ns, nc, p4);
    cr_assert_neq(memcmp(p1, p4, 32), 0, "the node's proof differs from the client's");
    nc[0] ^= 1;
    lethe_auth_client_proof("secret", ns, nc, p5);
    cr_assert_neq(memcmp(p1, p5, 32), 0, "another nonce gives another proof");

    uint8_t key[16] = {1, 2, 3}, a1[32], a2[32], v1[32], v2[32];
    lethe_auth_attach_proof(key, 5, ns, nc, a1);
    lethe_auth_attach_proof(key, 6, ns, nc, a2);
    cr_assert_neq(memcmp(a1, a2, 32), 0, "attach proof binds the region id");
    lethe_auth_verbs_proof(key, 5, 1, v1);
    lethe_auth_verbs_proof(key, 5, 2, v2);
    cr_assert_neq(memcmp(v1, v2, 32), 0, "verbs proof binds the sequence number");
}

static char dir[128];

static void mkdir_tmp(void)
{
    snprintf(dir, sizeof(dir), "/tmp/lethe-auth-test-%d", getpid());
    mkdir(dir, 0700);
}

static void rm_tmp(void)
{
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

Test(token_file, is_created_0600_with_a_random_token_when_absent, .init = mkdir_tmp, .fini = rm_tmp)
{
    char path[200], t1[128], t2[128], err[128];
    bool created;
    snprintf(path, sizeof(path), "%s/token", dir);
    cr_assert_eq(lethe_token_load(path, true, t1, sizeof(t1), &created, err, sizeof(err)), 0, "%s",
                 err);
    cr_assert(created);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
    cr_assert_eq(strlen(t1), 64, "64 hex digits");
    cr_assert_eq(lethe_token_load(path, true, t2, sizeof(t2), &created, err, sizeof(err)), 0);
    cr_assert_not(created, "an existing file is read, not replaced");
    cr_assert_str_eq(t1, t2);
}

Test(token_file, missing_without_create_is_an_error, .init = mkdir_tmp, .fini = rm_tmp)
{
    char path[200], t[128], err[128];
    snprintf(path, sizeof(path), "%s/none", dir);
    cr_assert_eq(lethe_token_load(path, false, t, sizeof(t), NULL, err, sizeof(err)), -ENOENT);
    cr_assert_eq(access(path, F_OK), -1, "not created");
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs(text, f);
    fclose(f);
}

Test(token_file, strips_the_newline_and_rejects_empty_or_long_tokens, .init = mkdir_tmp,
     .fini = rm_tmp)
{
    char path[200], t[128], err[128];
    snprintf(path, sizeof(path), "%s/tok", dir);
    write_file(path, "hello\n");
    cr_assert_eq(lethe_token_load(path, false, t, sizeof(t), NULL, err, sizeof(err)), 0);
    cr_assert_str_eq(t, "hello");
    write_file(path, "");
    cr_assert_eq(lethe_token_load(path, false, t, sizeof(t), NULL, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "empty"), "%s", err);
    char big[300];
    memset(big, 'k', 200);
    big[200] = '\0';
    write_file(path, big);
    cr_assert_eq(lethe_token_load(path, false, t, sizeof(t), NULL, err, sizeof(err)), -E2BIG);
    write_file(path, "two\nlines\n");
    cr_assert_eq(lethe_token_load(path, false, t, sizeof(t), NULL, err, sizeof(err)), -EINVAL);
}
