/* auth.h — how a memory node and its clients prove they share a token, and the primitives
 * for it: SHA-256, HMAC-SHA256 (FIPS 180-4, RFC 2104), a constant-time compare and the
 * token file.
 *
 * The token never travels. On every connection the node sends a fresh random nonce Ns, the
 * client answers with its own nonce Nc and
 *     client proof = HMAC-SHA256(token, "lethe-auth-client-v1" || Ns || Nc)
 * and the node, once it has checked that (in constant time), answers with
 *     node proof   = HMAC-SHA256(token, "lethe-auth-node-v1" || Ns || Nc)
 * so that a client also knows it reached a node holding the token. Nonces are 32 bytes from
 * getrandom(2); a recorded exchange is useless on another connection.
 *
 * A region the node lends gets a random 128-bit region key, returned to its owner by ALLOC.
 * Another connection of the same client binds to the region (ATTACH) with
 *     attach proof = HMAC-SHA256(region key, "lethe-attach-v1" || region id || Ns || Nc)
 * over that connection's own nonces, and an RDMA CM connection with
 *     verbs proof  = HMAC-SHA256(region key, "lethe-verbs-v1" || region id || sequence)
 * where the sequence number must grow from one connection to the next.
 *
 * Token file: one line of text (a trailing newline is ignored), 1..LETHE_TOKEN_MAX bytes.
 * lethe_token_load() can create a missing file, mode 0600, with 64 random hex digits.
 */
#ifndef LETHE_AUTH_H
#define LETHE_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LETHE_SHA256_LEN     32
#define LETHE_NONCE_LEN      32
#define LETHE_MAC_LEN        32
#define LETHE_REGION_KEY_LEN 16
#define LETHE_TOKEN_MAX      127 /* bytes, so that it fits lethe_transport_params.token */

struct lethe_sha256 {
    uint32_t h[8];
    uint64_t bytes; /* message length so far */
    uint8_t block[64];
    unsigned fill; /* bytes waiting in block */
};

void lethe_sha256_init(struct lethe_sha256 *s);
void lethe_sha256_update(struct lethe_sha256 *s, const void *data, size_t len);
void lethe_sha256_final(struct lethe_sha256 *s, uint8_t out[LETHE_SHA256_LEN]);
void lethe_sha256(const void *data, size_t len, uint8_t out[LETHE_SHA256_LEN]);

struct lethe_hmac {
    struct lethe_sha256 inner, outer;
};

void lethe_hmac_init(struct lethe_hmac *h, const void *key, size_t keylen);
void lethe_hmac_update(struct lethe_hmac *h, const void *data, size_t len);
void lethe_hmac_final(struct lethe_hmac *h, uint8_t out[LETHE_MAC_LEN]);
void lethe_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
                       uint8_t out[LETHE_MAC_LEN]);

/* true when a and b are equal; the time taken depends on n only. */
bool lethe_ct_equal(const void *a, const void *b, size_t n);

/* Fills buf from getrandom(2). Returns 0 or a negative errno. */
int lethe_random_bytes(void *buf, size_t n);

/* The proofs described above. token is NUL-terminated. */
void lethe_auth_client_proof(const char *token, const uint8_t ns[LETHE_NONCE_LEN],
                             const uint8_t nc[LETHE_NONCE_LEN], uint8_t out[LETHE_MAC_LEN]);
void lethe_auth_node_proof(const char *token, const uint8_t ns[LETHE_NONCE_LEN],
                           const uint8_t nc[LETHE_NONCE_LEN], uint8_t out[LETHE_MAC_LEN]);
void lethe_auth_attach_proof(const uint8_t key[LETHE_REGION_KEY_LEN], uint64_t region_id,
                             const uint8_t ns[LETHE_NONCE_LEN], const uint8_t nc[LETHE_NONCE_LEN],
                             uint8_t out[LETHE_MAC_LEN]);
void lethe_auth_verbs_proof(const uint8_t key[LETHE_REGION_KEY_LEN], uint64_t region_id,
                            uint64_t seq, uint8_t out[LETHE_MAC_LEN]);

/* Reads the token in `path` into token[size] (NUL-terminated). When the file does not exist
 * and `create` is set, creates it (O_EXCL, mode 0600) with a random token and sets *created.
 * Returns 0, or a negative errno with a reason in err[errlen] (e.g. "token file is empty"). */
int lethe_token_load(const char *path, bool create, char *token, size_t size, bool *created,
                     char *err, size_t errlen);

#endif
