/* control.c — see control.h. One evhttp server on the session's loop; replies are rendered
 * by report.c into an open_memstream and sent whole.
 *
 * PUT /cache_size is answered asynchronously: the request goes into the stats segment's
 * command slot, the program's stats thread applies it (lethe_set_cache_size) and answers
 * there, and a 10 ms timer here polls for the answer (up to CACHE_SIZE_TIMEOUT_MS, then
 * 503). One change is in flight at a time; another PUT meanwhile gets 409. If the client
 * goes away first, the answer is dropped.
 */
#define _GNU_SOURCE
#include "lethed/control.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/log.h"
#include "core/stats_shm.h"
#include "lethed/report.h"

#define CACHE_SIZE_TIMEOUT_MS 10000
#define POLL_MS               10
#define MAX_BODY              256

struct lethed_control {
    struct lethed_session *s;
    struct evhttp *http;
    struct lethe_stats_snapshot *snap; /* scratch: big (all shards), so not on the stack */
    /* the cache size change in flight */
    struct evhttp_request *pending;
    struct evhttp_connection *pending_conn;
    uint64_t pending_ticket;
    uint64_t pending_deadline_ns;
    struct event *poll_timer;
};

enum { ALLOW_GET = 1, ALLOW_PUT = 2 };

static void send_body(struct evhttp_request *req, int code, const char *reason,
                      const char *content_type, const char *body, size_t len)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", content_type);
    evhttp_add_header(h, "Cache-Control", "no-store");
    struct evbuffer *buf = evbuffer_new();
    if (buf && len)
        evbuffer_add(buf, body, len);
    evhttp_send_reply(req, code, reason, buf);
    if (buf)
        evbuffer_free(buf);
}

static void send_text(struct evhttp_request *req, int code, const char *reason, const char *fmt,
                      ...) __attribute__((format(printf, 4, 5)));

static void send_text(struct evhttp_request *req, int code, const char *reason, const char *fmt,
                      ...)
{
    char body[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(body, sizeof(body), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(body))
        n = (int)sizeof(body) - 1;
    send_body(req, code, reason, "text/plain; charset=utf-8", body, (size_t)n);
}

static void send_method_not_allowed(struct evhttp_request *req, int allow)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                      allow & ALLOW_PUT ? "GET, HEAD, PUT" : "GET, HEAD");
    send_text(req, 405, "Method Not Allowed", "method not allowed here (allowed: %s)\n",
              allow & ALLOW_PUT ? "GET, HEAD, PUT" : "GET, HEAD");
}

/* Renders with fn into memory and sends it. */
static void send_rendered(struct lethed_control *c, struct evhttp_request *req,
                          const char *content_type,
                          void (*fn)(FILE *, const struct lethed_session *,
                                     const struct lethe_stats_snapshot *, bool))
{
    bool have = lethe_stats_shm_read(c->s->shm, c->snap) == 0;
    if (c->s->running) /* at most once a second: smaps walks the page tables */
        lethed_account_update(&c->s->account, (int)c->s->pid, have ? c->snap : NULL, c->s->command,
                              false);
    char *data = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&data, &len);
    if (!out) {
        send_text(req, 500, "Internal Server Error", "out of memory\n");
        return;
    }
    fn(out, c->s, c->snap, have);
    fclose(out);
    send_body(req, 200, "OK", content_type, data, len);
    free(data);
}

static void serve_index(struct evhttp_request *req)
{
    send_text(req, 200, "OK",
              "lethed control port\n"
              "GET  /stats       runtime counters, per-shard stats, config (JSON)\n"
              "GET  /metrics     the same in Prometheus text format\n"
              "GET  /health      200 ok while the program runs with fresh stats\n"
              "GET  /cache_size  the local cache size now\n"
              "PUT  /cache_size  body like 256M: resize the cache of the running program\n");
}

static void serve_health(struct lethed_control *c, struct evhttp_request *req)
{
    bool have = lethe_stats_shm_read(c->s->shm, c->snap) == 0;
    const char *why;
    int code = lethed_health(c->s, c->snap, have, &why);
    send_text(req, code, code == 200 ? "OK" : "Service Unavailable", "%s\n", why);
}

static void send_cache_size(struct evhttp_request *req, int code, const char *reason,
                            uint64_t bytes)
{
    char human[32], body[128];
    lethe_format_size(bytes, human, sizeof(human));
    int n = snprintf(body, sizeof(body), "{\"cache_size\": %llu, \"human\": \"%s\"}\n",
                     (unsigned long long)bytes, human);
    send_body(req, code, reason, "application/json", body, (size_t)n);
}

static void serve_cache_size_get(struct lethed_control *c, struct evhttp_request *req)
{
    bool have = lethe_stats_shm_read(c->s->shm, c->snap) == 0;
    if (!have || c->snap->state != LETHE_STATS_RUNNING) {
        send_text(req, 503, "Service Unavailable", "the runtime is not running\n");
        return;
    }
    send_cache_size(req, 200, "OK", c->snap->cache_size);
}

static void pending_clear(struct lethed_control *c)
{
    if (c->pending_conn)
        evhttp_connection_set_closecb(c->pending_conn, NULL, NULL);
    c->pending = NULL;
    c->pending_conn = NULL;
    c->pending_ticket = 0;
    evtimer_del(c->poll_timer);
}

static void pending_conn_closed(struct evhttp_connection *conn, void *arg)
{
    struct lethed_control *c = arg;
    if (conn == c->pending_conn) {
        /* Keep the ticket: its answer is still awaited, only nobody will read it. */
        c->pending = NULL;
        c->pending_conn = NULL;
    }
}

static void poll_cache_size(evutil_socket_t fd, short what, void *arg)
{
    struct lethed_control *c = arg;
    int result;
    uint64_t value;
    bool done = lethe_stats_shm_poll_reply(c->s->shm, c->pending_ticket, &result, &value);
    struct evhttp_request *req = c->pending;
    if (done) {
        if (req && result == 0)
            send_cache_size(req, 200, "OK", value);
        else if (req && (result == -EINVAL || result == -ERANGE))
            send_text(req, 409, "Conflict",
                      "the runtime refused this size (%s); the cache stays at %llu bytes\n",
                      strerror(-result), (unsigned long long)value);
        else if (req)
            send_text(req, 503, "Service Unavailable", "resizing failed: %s\n", strerror(-result));
        pending_clear(c);
        return;
    }
    if (!c->s->running || lethe_monotonic_ns() > c->pending_deadline_ns) {
        if (req)
            send_text(req, 503, "Service Unavailable",
                      c->s->running ? "the program did not answer in time\n"
                                    : "the program has exited\n");
        pending_clear(c);
    }
    /* Otherwise keep polling, even for a client that went away: the slot is busy until the
     * program answers or the deadline passes. */
}

/* Reads the request body into buf (NUL-terminated, trimmed). Returns its length or -1. */
static int read_body(struct evhttp_request *req, char *buf, size_t size)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    if (len >= size)
        return -1;
    evbuffer_copyout(in, buf, len);
    buf[len] = '\0';
    char *start = buf;
    while (isspace((unsigned char)*start))
        start++;
    char *end = start + strlen(start);
    while (end > start && isspace((unsigned char)end[-1]))
        *--end = '\0';
    memmove(buf, start, (size_t)(end - start) + 1);
    return (int)(end - start);
}

static void serve_cache_size_put(struct lethed_control *c, struct evhttp_request *req)
{
    char body[MAX_BODY];
    int len = read_body(req, body, sizeof(body));
    uint64_t bytes;
    if (len <= 0) {
        send_text(req, 400, "Bad Request", "give the new size in the body, e.g. 256M\n");
        return;
    }
    int rc = lethe_parse_size(body, &bytes);
    if (rc == -ERANGE) {
        send_text(req, 400, "Bad Request", "'%s' is too large\n", body);
        return;
    }
    if (rc < 0) {
        send_text(req, 400, "Bad Request", "'%s' is not a size (use K, M or G)\n", body);
        return;
    }
    if (bytes == 0 || bytes % LETHE_PAGE_SIZE) {
        send_text(req, 400, "Bad Request", "the size must be a positive multiple of %lu\n",
                  LETHE_PAGE_SIZE);
        return;
    }
    if (!c->s->running) {
        send_text(req, 503, "Service Unavailable", "the program is not running\n");
        return;
    }
    bool have = lethe_stats_shm_read(c->s->shm, c->snap) == 0;
    if (!have || c->snap->state != LETHE_STATS_RUNNING) {
        send_text(req, 503, "Service Unavailable", "the runtime is not running\n");
        return;
    }
    if (c->pending_ticket) {
        send_text(req, 409, "Conflict", "another cache size change is in progress\n");
        return;
    }
    c->pending = req;
    c->pending_conn = evhttp_request_get_connection(req);
    if (c->pending_conn)
        evhttp_connection_set_closecb(c->pending_conn, pending_conn_closed, c);
    c->pending_ticket = lethe_stats_shm_request_cache_size(c->s->shm, bytes);
    c->pending_deadline_ns = lethe_monotonic_ns() + CACHE_SIZE_TIMEOUT_MS * 1000000ULL;
    struct timeval tv = {.tv_sec = 0, .tv_usec = POLL_MS * 1000};
    evtimer_add(c->poll_timer, &tv);
}

static void handle(struct evhttp_request *req, void *arg)
{
    struct lethed_control *c = arg;
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    bool get = method == EVHTTP_REQ_GET || method == EVHTTP_REQ_HEAD;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!path || !*path)
        path = "/";

    if (strcmp(path, "/") == 0) {
        if (!get)
            send_method_not_allowed(req, ALLOW_GET);
        else
            serve_index(req);
    } else if (strcmp(path, "/stats") == 0) {
        if (!get)
            send_method_not_allowed(req, ALLOW_GET);
        else
            send_rendered(c, req, "application/json", lethed_report_json);
    } else if (strcmp(path, "/metrics") == 0) {
        if (!get)
            send_method_not_allowed(req, ALLOW_GET);
        else
            send_rendered(c, req, "text/plain; version=0.0.4; charset=utf-8",
                          lethed_report_prometheus);
    } else if (strcmp(path, "/health") == 0) {
        if (!get)
            send_method_not_allowed(req, ALLOW_GET);
        else
            serve_health(c, req);
    } else if (strcmp(path, "/cache_size") == 0) {
        if (get)
            serve_cache_size_get(c, req);
        else if (method == EVHTTP_REQ_PUT)
            serve_cache_size_put(c, req);
        else
            send_method_not_allowed(req, ALLOW_GET | ALLOW_PUT);
    } else {
        send_text(req, 404, "Not Found", "no such endpoint: %s (GET / lists them)\n", path);
    }
}

/* Splits "host:port" / "[v6]:port". Returns 0 or -EINVAL. */
static int split_listen(const char *listen, char *host, size_t hostlen, unsigned *port)
{
    const char *colon = strrchr(listen, ':');
    if (!colon || colon == listen)
        return -EINVAL;
    char *end;
    unsigned long p = strtoul(colon + 1, &end, 10);
    if (*end || end == colon + 1 || p > 65535)
        return -EINVAL;
    size_t n = (size_t)(colon - listen);
    if (n >= 2 && listen[0] == '[' && listen[n - 1] == ']') {
        listen++;
        n -= 2;
    }
    if (n == 0 || n >= hostlen)
        return -EINVAL;
    memcpy(host, listen, n);
    host[n] = '\0';
    *port = (unsigned)p;
    return 0;
}

static void describe_bound(evutil_socket_t fd, char *out, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
            port = ntohs(a->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
            port = ntohs(a->sin6_port);
            snprintf(out, len, "[%s]:%u", ip, port);
            return;
        }
    }
    snprintf(out, len, "%s:%u", ip, port);
}

int lethed_control_start(struct lethed_session *s, const char *listen, struct lethed_control **out)
{
    char host[LETHE_ADDR_MAX];
    unsigned port;
    if (split_listen(listen, host, sizeof(host), &port) < 0) {
        lethe_error("control.listen '%s' is not host:port", listen);
        return -EINVAL;
    }
    struct lethed_control *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->s = s;
    c->snap = calloc(1, sizeof(*c->snap));
    c->http = evhttp_new(s->base);
    c->poll_timer = event_new(s->base, -1, EV_PERSIST, poll_cache_size, c);
    if (!c->snap || !c->http || !c->poll_timer) {
        lethed_control_stop(c);
        return -ENOMEM;
    }
    evhttp_set_allowed_methods(
        c->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT | EVHTTP_REQ_POST |
                     EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH | EVHTTP_REQ_TRACE);
    evhttp_set_max_body_size(c->http, 4096);
    evhttp_set_max_headers_size(c->http, 16384);
    evhttp_set_timeout(c->http, 30);
    evhttp_set_gencb(c->http, handle, c);
    struct evhttp_bound_socket *bound =
        evhttp_bind_socket_with_handle(c->http, host, (ev_uint16_t)port);
    if (!bound) {
        int err = errno ? errno : EADDRINUSE;
        lethe_error("control port: cannot listen on %s: %s", listen, strerror(err));
        lethed_control_stop(c);
        return -err;
    }
    describe_bound(evhttp_bound_socket_get_fd(bound), s->control_address,
                   sizeof(s->control_address));
    lethe_info("control port listening on http://%s/", s->control_address);
    *out = c;
    return 0;
}

void lethed_control_stop(struct lethed_control *c)
{
    if (!c)
        return;
    if (c->pending) {
        send_text(c->pending, 503, "Service Unavailable", "lethed is shutting down\n");
    }
    if (c->poll_timer) {
        pending_clear(c);
        event_free(c->poll_timer);
    }
    if (c->http)
        evhttp_free(c->http);
    free(c->snap);
    free(c);
}
