/* Scalar parsers for the config loader: booleans, integers, sizes, durations,
 * log levels, ${ENV:default} placeholders, listen addresses and upstream node
 * lists. Each is strict: anything it does not fully understand is an error,
 * because a typo in a proxy's config should stop it at boot, not at 3 a.m. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"
#include "skyrelay/buf.h"
#include "skyrelay/log.h"

#define MAX_NESTING 8

static bool is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

int sr_config_value_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return SR_CFG_EINVAL;
}

/* Reads the digits at *p into *out, advancing *p. */
static int read_uint(const char **p, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    if (!is_digit(*s)) return SR_CFG_EINVAL;
    for (; is_digit(*s); s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) {
            while (is_digit(*s)) s++;
            *p = s;
            *out = UINT64_MAX;
            return SR_CFG_ERANGE;
        }
        v = v * 10 + d;
    }
    *p = s;
    *out = v;
    return 0;
}

int sr_config_value_uint(const char *s, uint64_t *out)
{
    int rc = read_uint(&s, out);
    if (rc == 0 && *s != '\0') rc = SR_CFG_EINVAL;
    return rc;
}

struct unit {
    const char *name;
    uint64_t mult;
};

static const struct unit size_units[] = {
    {"", 1},
    {"b", 1},
    {"kb", 1000ull},
    {"mb", 1000ull * 1000},
    {"gb", 1000ull * 1000 * 1000},
    {"tb", 1000ull * 1000 * 1000 * 1000},
    {"kib", 1ull << 10},
    {"mib", 1ull << 20},
    {"gib", 1ull << 30},
    {"tib", 1ull << 40},
};

int sr_config_value_size(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    int rc = read_uint(&s, &v);
    if (rc == SR_CFG_EINVAL) return rc;
    while (*s == ' ') s++;
    for (size_t i = 0; i < sizeof size_units / sizeof size_units[0]; i++) {
        if (strcasecmp(s, size_units[i].name) != 0) continue;
        if (rc == SR_CFG_ERANGE || v > UINT64_MAX / size_units[i].mult) return SR_CFG_ERANGE;
        *out = v * size_units[i].mult;
        return 0;
    }
    return SR_CFG_EINVAL;
}

static const struct unit duration_units[] = {
    {"ms", 1}, /* before "m" */
    {"s", 1000},
    {"m", 60 * 1000},
    {"h", 60 * 60 * 1000},
};

int sr_config_value_duration(const char *s, uint64_t *out_ms)
{
    uint64_t total = 0, v = 0;
    bool overflow = false;
    int rc = read_uint(&s, &v);
    if (rc == SR_CFG_EINVAL) return rc;
    if (*s == '\0') { /* bare integer: milliseconds, like Satellite's flush_time */
        if (rc == 0) *out_ms = v;
        return rc;
    }
    for (;;) {
        const struct unit *u = NULL;
        if (rc == SR_CFG_ERANGE) overflow = true;
        for (size_t i = 0; i < sizeof duration_units / sizeof duration_units[0] && !u; i++) {
            size_t n = strlen(duration_units[i].name);
            if (strncmp(s, duration_units[i].name, n) == 0 && !(s[n] >= 'a' && s[n] <= 'z'))
                u = &duration_units[i];
        }
        if (!u) return SR_CFG_EINVAL;
        s += strlen(u->name);
        if (v > UINT64_MAX / u->mult || total > UINT64_MAX - v * u->mult)
            overflow = true;
        else
            total += v * u->mult;
        if (*s == '\0') break;
        rc = read_uint(&s, &v);
        if (rc == SR_CFG_EINVAL) return rc;
    }
    if (overflow) return SR_CFG_ERANGE;
    *out_ms = total;
    return 0;
}

int sr_config_value_log_level(const char *s)
{
    static const struct {
        const char *name;
        int level;
    } levels[] = {
        {"error", SR_LOG_ERROR}, {"warn", SR_LOG_WARN},   {"warning", SR_LOG_WARN},
        {"info", SR_LOG_INFO},   {"debug", SR_LOG_DEBUG}, {"trace", SR_LOG_DEBUG},
        {"fatal", SR_LOG_ERROR}, {"panic", SR_LOG_ERROR},
    };
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
        if (strcasecmp(s, levels[i].name) == 0) return levels[i].level;
    return -1;
}

static void format_units(uint64_t v, const struct unit *units, size_t n, char *buf, size_t len)
{
    const struct unit *best = NULL;
    for (size_t i = 0; i < n; i++)
        if (units[i].mult > 1 && v != 0 && v % units[i].mult == 0 &&
            (!best || units[i].mult > best->mult))
            best = &units[i];
    if (best)
        snprintf(buf, len, "%llu%s", (unsigned long long)(v / best->mult), best->name);
    else
        snprintf(buf, len, "%llu%s", (unsigned long long)v, units == duration_units ? "ms" : "");
}

void sr_config_format_size(uint64_t v, char *buf, size_t n)
{
    /* only the binary units: a limit printed as "1GB" would read as 1000^3 */
    static const struct unit bin[] = {{"KiB", 1ull << 10}, {"MiB", 1ull << 20},
                                      {"GiB", 1ull << 30}, {"TiB", 1ull << 40}};
    format_units(v, bin, sizeof bin / sizeof bin[0], buf, n);
}

void sr_config_format_duration(uint64_t ms, char *buf, size_t n)
{
    format_units(ms, duration_units, sizeof duration_units / sizeof duration_units[0], buf, n);
}

/* ---- ${NAME:default} placeholders ---- */

static int sbuf_add(struct sr_buf *b, const char *s, size_t n)
{
    return sr_buf_append(b, s, n) == 0 ? 0 : -ENOMEM;
}

/* Satellite's parseVal: a value written as "..." is the string inside. */
static int add_unquoted(struct sr_buf *b, const char *s, size_t n)
{
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
        s++;
        n -= 2;
    }
    return sbuf_add(b, s, n);
}

static bool is_name_char(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || is_digit(ch) || ch == '_' ||
           ch == '-' || ch == '.';
}

static int expand(struct sr_buf *b, const char *s, size_t len, int depth,
                  struct sr_config_expanded *out, const char **why)
{
    size_t i = 0;
    int rc = 0;
    while (i < len && rc == 0) {
        if (s[i] != '$' || i + 1 >= len || s[i + 1] != '{') {
            size_t j = i + 1;
            while (j < len && s[j] != '$') j++;
            rc = sbuf_add(b, s + i, j - i);
            i = j;
            continue;
        }
        const char *name = s + i + 2;
        size_t name_len = 0, end;
        while (i + 2 + name_len < len && is_name_char(name[name_len])) name_len++;
        end = i + 2 + name_len; /* the ':' or '}' */
        if (end >= len) {
            *why = "unterminated ${ placeholder";
            return -1;
        }
        if (name_len == 0 || (s[end] != ':' && s[end] != '}')) {
            *why = "invalid placeholder (expected ${NAME} or ${NAME:default}, NAME of letters, "
                   "digits, '_', '-', '.')";
            return -1;
        }
        const char *def = NULL;
        size_t def_len = 0;
        if (s[end] == ':') { /* the default runs to the matching '}' */
            int nest = 0;
            size_t k = end + 1;
            for (; k < len; k++) {
                if (s[k] == '$' && k + 1 < len && s[k + 1] == '{') {
                    nest++;
                    k++;
                } else if (s[k] == '}' && nest-- == 0) {
                    break;
                }
            }
            if (k >= len) {
                *why = "unterminated ${ placeholder";
                return -1;
            }
            def = s + end + 1;
            def_len = k - end - 1;
            end = k;
        }
        char env_name[256];
        if (name_len >= sizeof env_name) {
            *why = "placeholder name too long";
            return -1;
        }
        memcpy(env_name, name, name_len);
        env_name[name_len] = '\0';
        const char *env = getenv(env_name);
        out->placeholders++;
        if (env && *env) { /* as in Satellite, an empty variable counts as unset */
            if (!out->env_name) {
                out->env_name = name;
                out->env_name_len = name_len;
            }
            rc = add_unquoted(b, env, strlen(env));
        } else {
            if (!out->unset_name) { /* a missing secret is named at start (src/main.c) */
                out->unset_name = name;
                out->unset_name_len = name_len;
            }
            if (def) {
                struct sr_buf sub;
                sr_buf_init(&sub);
                if (depth >= MAX_NESTING) {
                    *why = "placeholders nested too deeply";
                    return -1;
                }
                rc = expand(&sub, def, def_len, depth + 1, out, why);
                if (rc == 0) rc = add_unquoted(b, sub.p ? sub.p : "", sub.len);
                sr_buf_free(&sub);
            }
        }
        i = end + 1;
    }
    return rc;
}

int sr_config_expand(const char *in, size_t len, struct sr_config_expanded *out, const char **why)
{
    struct sr_buf b;
    int rc;
    sr_buf_init(&b);
    memset(out, 0, sizeof *out);
    rc = expand(&b, in, len, 0, out, why);
    if (rc == 0) rc = sbuf_add(&b, "", 0); /* a NUL even for empty text */
    if (rc == -ENOMEM) *why = "out of memory";
    if (rc != 0) goto fail;
    size_t start = 0, end = b.len;
    while (start < end && strchr(" \t\r\n", b.p[start])) start++;
    while (end > start && strchr(" \t\r\n", b.p[end - 1])) end--;
    memmove(b.p, b.p + start, end - start);
    b.p[end - start] = '\0';
    out->text = b.p;
    return 0;
fail:
    sr_buf_free(&b);
    return -1;
}

/* ---- addresses ---- */

/* Checks "host:port" / "[v6]:port" in s[0..len). `listen` allows an empty host
 * and port 0. Sets *host_len to the length of the host part (0 for ":port"). */
static int check_hostport(const char *s, size_t len, bool listen, size_t *host_len,
                          const char **why)
{
    const char *colon;
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        char v6[INET6_ADDRSTRLEN];
        struct in6_addr a;
        size_t n = close ? (size_t)(close - s - 1) : 0;
        if (!close) {
            *why = "unterminated '[' in IPv6 address";
            return -1;
        }
        if (n == 0 || n >= sizeof v6) {
            *why = "invalid IPv6 address";
            return -1;
        }
        memcpy(v6, s + 1, n);
        v6[n] = '\0';
        if (inet_pton(AF_INET6, v6, &a) != 1) {
            *why = "invalid IPv6 address";
            return -1;
        }
        colon = close + 1;
        if (colon >= s + len || *colon != ':') {
            *why = "missing port (expected host:port)";
            return -1;
        }
    } else {
        colon = memchr(s, ':', len);
        if (!colon) {
            *why = "missing port (expected host:port)";
            return -1;
        }
        if (memchr(colon + 1, ':', len - (size_t)(colon + 1 - s))) {
            *why = "an IPv6 address must be in brackets, e.g. [::1]:11800";
            return -1;
        }
        if (colon == s && !listen) {
            *why = "missing host (expected host:port)";
            return -1;
        }
        for (const char *h = s; h < colon; h++) {
            if (!is_name_char(*h)) {
                *why = "invalid character in host name";
                return -1;
            }
        }
    }
    *host_len = (size_t)(colon - s);
    const char *p = colon + 1;
    size_t plen = len - (size_t)(p - s);
    uint64_t port = 0;
    bool digits = plen > 0 && plen <= 5;
    for (size_t i = 0; i < plen && digits; i++) {
        digits = is_digit(p[i]);
        port = port * 10 + (uint64_t)(p[i] - '0');
    }
    if (plen == 0) {
        *why = "missing port (expected host:port)";
        return -1;
    }
    if (!digits || port > 65535 || (port == 0 && !listen)) {
        *why = listen ? "port must be a number between 0 and 65535"
                      : "port must be a number between 1 and 65535";
        return -1;
    }
    return 0;
}

int sr_config_listen_address(const char *s, char **out, const char **why)
{
    size_t len = strlen(s), host_len;
    if (check_hostport(s, len, true, &host_len, why) != 0) return -1;
    if (host_len == 0) { /* Satellite's ":11800": every IPv4 interface */
        size_t n = strlen("0.0.0.0") + len + 1;
        *out = malloc(n);
        if (*out) snprintf(*out, n, "0.0.0.0%s", s);
    } else {
        *out = strdup(s);
    }
    return *out ? 0 : -ENOMEM;
}

/* One "host:port[#weight]" entry, already trimmed. */
static int parse_node(const char *s, size_t len, struct sr_node_config *node, const char **why)
{
    const char *hash = memchr(s, '#', len);
    size_t addr_len = hash ? (size_t)(hash - s) : len, host_len;
    uint64_t weight = 1;
    if (check_hostport(s, addr_len, false, &host_len, why) != 0) return -1;
    if (hash) {
        size_t wlen = len - addr_len - 1;
        bool digits = wlen > 0 && wlen <= 4;
        weight = 0;
        for (size_t i = 0; i < wlen && digits; i++) {
            digits = is_digit(hash[1 + i]);
            weight = weight * 10 + (uint64_t)(hash[1 + i] - '0');
        }
        if (!digits || weight < 1 || weight > 1000) {
            *why = "weight must be a number between 1 and 1000";
            return -1;
        }
    }
    node->address = strndup(s, addr_len);
    node->weight = (uint32_t)weight;
    if (!node->address) {
        *why = "out of memory";
        return -ENOMEM;
    }
    return 0;
}

int sr_config_nodes_append(const char *list, size_t len, struct sr_node_config **nodes,
                           size_t *n_nodes, const char **why, const char **bad, size_t *bad_len)
{
    size_t n0 = *n_nodes, pos = 0, blank = 0;
    int rc = 0;
    while (blank < len && strchr(" \t\r\n", list[blank])) blank++;
    if (blank == len) return 0; /* no entries at all: the caller decides */
    while (rc == 0 && pos <= len) {
        const char *comma = memchr(list + pos, ',', len - pos);
        size_t end = comma ? (size_t)(comma - list) : len, a = pos, b = end;
        while (a < b && (list[a] == ' ' || list[a] == '\t')) a++;
        while (b > a && (list[b - 1] == ' ' || list[b - 1] == '\t')) b--;
        *bad = list + a;
        *bad_len = b - a;
        pos = end + 1;
        if (a == b) {
            *why = "empty entry in node list";
            rc = -1;
            break;
        }
        struct sr_node_config node;
        rc = parse_node(list + a, b - a, &node, why);
        if (rc != 0) break;
        for (size_t i = 0; i < *n_nodes && rc == 0; i++) {
            if (strcmp((*nodes)[i].address, node.address) == 0) {
                *why = "duplicate node";
                rc = -1;
            }
        }
        struct sr_node_config *grown = rc == 0 ? realloc(*nodes, (*n_nodes + 1) * sizeof **nodes)
                                                : NULL;
        if (rc == 0 && !grown) {
            *why = "out of memory";
            rc = -ENOMEM;
        }
        if (rc != 0) {
            free(node.address);
            break;
        }
        *nodes = grown;
        (*nodes)[(*n_nodes)++] = node;
    }
    if (rc != 0) { /* all or nothing */
        while (*n_nodes > n0) free((*nodes)[--*n_nodes].address);
    }
    return rc;
}

int sr_config_parse_nodes(const char *list, struct sr_node_config **nodes, size_t *n_nodes,
                          const char **why)
{
    const char *bad;
    size_t bad_len, n0 = *n_nodes;
    if (sr_config_nodes_append(list, strlen(list), nodes, n_nodes, why, &bad, &bad_len) != 0)
        return -1;
    if (*n_nodes == n0) {
        *why = "empty node list";
        return -1;
    }
    return 0;
}
