/* Configuration loading: the YAML walk. libyaml's loader (yaml_parser_load)
 * turns the file into a document: a tree of mapping, sequence and scalar
 * nodes, each with its start mark. bind_map() walks the mappings, builds the
 * dotted key path of every entry and looks it up in the key table
 * (src/config/config.c, sr_config_keys), one row per leaf: path, type,
 * offset, range. A path that is the prefix of some row is a section and is
 * walked in turn; anything else is an unknown key. So the schema is that one
 * table, not a state machine, and every error knows its line, column and key
 * path.
 *
 * Values are bound into a scratch copy (struct sr_config_scratch): the public
 * struct is only written when the whole document is valid. The per-pipe
 * values are resolved after the walk, from which keys were actually set
 * (resolve_pipes: built-in < queue < pipe_defaults < pipes.<name>). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "internal.h"
#include "skyrelay/buf.h"
#include "skyrelay/config.h"
#include "skyrelay/log.h"
#include "skyrelay/pipes.h"


struct ctx {
    const char *name; /* file name in messages */
    FILE *err;
    int errors;
    yaml_document_t *doc;
    struct sr_config_scratch s;
    const struct sr_config_key *keys; /* the table (sr_config_keys) */
    size_t n_keys;
    struct sr_config_seen {
        bool set;
        size_t line, col;
    } *seen; /* one per key */
};

static void verror(struct ctx *c, size_t line, size_t col, const char *path, const char *fmt,
                   va_list ap)
{
    c->errors++;
    if (!c->err) return;
    fprintf(c->err, "%s:", c->name);
    if (line) fprintf(c->err, "%zu:%zu:", line, col);
    if (path) fprintf(c->err, " %s:", path);
    fputc(' ', c->err);
    vfprintf(c->err, fmt, ap);
    fputc('\n', c->err);
}

static void __attribute__((format(printf, 5, 6)))
report_at(struct ctx *c, size_t line, size_t col, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(c, line, col, path, fmt, ap);
    va_end(ap);
}

/* An error about node n (yaml marks are 0-based). */
static void __attribute__((format(printf, 4, 5)))
report(struct ctx *c, const yaml_node_t *n, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(c, n->start_mark.line + 1, n->start_mark.column + 1, path, fmt, ap);
    va_end(ap);
}

static const char *kind_name(const yaml_node_t *n)
{
    return n->type == YAML_MAPPING_NODE ? "mapping" : n->type == YAML_SEQUENCE_NODE ? "sequence"
                                                                                    : "scalar";
}

/* `key:` with nothing after it, `~` or `null`: an empty section. */
static bool is_null(const yaml_node_t *n)
{
    const char *v = (const char *)n->data.scalar.value;
    return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           (v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
            strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0);
}

static int find_key(const char *path)
{
    size_t n_keys;
    const struct sr_config_key *keys = sr_config_keys(&n_keys);
    for (size_t i = 0; i < n_keys; i++)
        if (strcmp(keys[i].path, path) == 0) return (int)i;
    return -1;
}

static bool is_section(const char *path)
{
    size_t n = strlen(path), n_keys;
    const struct sr_config_key *keys = sr_config_keys(&n_keys);
    for (size_t i = 0; i < n_keys; i++)
        if (strncmp(keys[i].path, path, n) == 0 && keys[i].path[n] == '.') return true;
    return false;
}

/* Whether the key bound to field `f` (inside c->s) was set in the document. */
static bool key_set(const struct ctx *c, const void *f)
{
    size_t off = (size_t)((const char *)f - (const char *)&c->s);
    for (size_t i = 0; i < c->n_keys; i++)
        if (c->keys[i].off == off) return c->seen[i].set;
    return false;
}

/* " (from environment NAME)", or with the value for messages that do not quote it. */
static const char *env_note(const struct sr_config_expanded *x, bool with_value, char *buf,
                            size_t n)
{
    buf[0] = '\0';
    if (x->env_name && with_value)
        snprintf(buf, n, " (got '%s' from environment %.*s)", x->text, (int)x->env_name_len,
                 x->env_name);
    else if (x->env_name)
        snprintf(buf, n, " (from environment %.*s)", (int)x->env_name_len, x->env_name);
    return buf;
}

static void format_bound(const struct sr_config_key *k, uint64_t v, char *buf, size_t n)
{
    if (k->type == K_SIZE)
        sr_config_format_size(v, buf, n);
    else if (k->type == K_DURATION)
        sr_config_format_duration(v, buf, n);
    else
        snprintf(buf, n, "%llu", (unsigned long long)v);
}

/* A number-like leaf: parse, range-check, store. */
static void bind_number(struct ctx *c, const struct sr_config_key *k, const yaml_node_t *v,
                        const char *path, const struct sr_config_expanded *x)
{
    static const char *const expected[] = {
        [K_U32] = "number 'N' (expected a non-negative integer)",
        [K_SIZE] = "size 'N' (expected e.g. 512, 64KiB, 50MiB, 1GiB)",
        [K_DURATION] = "duration 'N' (expected e.g. 250ms, 5s, 2m, 1h; a bare number is ms)",
    };
    char note[512], lo[32], hi[32];
    void *field = (char *)&c->s + k->off;
    uint64_t val = 0;
    int rc;

    if (k->type == K_SIZE)
        rc = sr_config_value_size(x->text, &val);
    else if (k->type == K_DURATION)
        rc = sr_config_value_duration(x->text, &val);
    else
        rc = sr_config_value_uint(x->text, &val);

    if (rc == SR_CFG_EINVAL) {
        const char *e = expected[k->type], *q = strchr(e, 'N');
        report(c, v, path, "invalid %.*s%s%s%s", (int)(q - e), e, x->text, q + 1,
               env_note(x, false, note, sizeof note));
        return;
    }
    if (rc == SR_CFG_ERANGE || val < k->min || val > k->max) {
        format_bound(k, k->min, lo, sizeof lo);
        format_bound(k, k->max, hi, sizeof hi);
        report(c, v, path, "must be between %s and %s%s", lo, hi,
               env_note(x, true, note, sizeof note));
        return;
    }
    if (k->type == K_SIZE)
        *(uint64_t *)field = val;
    else
        *(uint32_t *)field = (uint32_t)val;
}

/* Expands and appends the node list in scalar v; 0 or -1 (reported). */
static int add_nodes(struct ctx *c, const yaml_node_t *v, const char *path, bool item,
                     struct sr_node_config **nodes, size_t *n)
{
    struct sr_config_expanded x;
    const char *why, *bad;
    size_t bad_len, n0 = *n;
    char note[512];
    int rc = -1;

    if (sr_config_expand((const char *)v->data.scalar.value, v->data.scalar.length, &x, &why)) {
        report(c, v, path, "%s", why);
        return -1;
    }
    if (sr_config_nodes_append(x.text, strlen(x.text), nodes, n, &why, &bad, &bad_len) != 0) {
        if (bad_len)
            report(c, v, path, "'%.*s': %s%s", (int)bad_len, bad, why,
                   env_note(&x, false, note, sizeof note));
        else
            report(c, v, path, "%s%s", why, env_note(&x, false, note, sizeof note));
        goto done;
    }
    if (item && *n == n0) {
        report(c, v, path, "empty entry in node list%s", env_note(&x, false, note, sizeof note));
        goto done;
    }
    rc = 0;
done:
    free(x.text);
    return rc;
}

static void bind_nodes(struct ctx *c, const yaml_node_t *v, const char *path)
{
    struct sr_node_config *nodes = NULL;
    size_t n = 0;
    int failed = 0;

    if (v->type == YAML_SCALAR_NODE) {
        failed = add_nodes(c, v, path, false, &nodes, &n);
    } else if (v->type == YAML_SEQUENCE_NODE) {
        size_t i = 0;
        for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
             it++, i++) {
            const yaml_node_t *item = yaml_document_get_node(c->doc, *it);
            char ipath[300];
            snprintf(ipath, sizeof ipath, "%s[%zu]", path, i);
            if (item->type != YAML_SCALAR_NODE) {
                report(c, item, ipath, "must be a \"host:port[#weight]\" string, not a %s",
                       kind_name(item));
                failed = -1;
            } else if (add_nodes(c, item, ipath, true, &nodes, &n) != 0) {
                failed = -1;
            }
        }
    } else {
        report(c, v, path, "must be a \"host:port[#weight]\" list: a string or a sequence of "
                           "strings, not a mapping");
        failed = -1;
    }
    if (!failed && n == 0) {
        report(c, v, path, "must list at least one upstream node");
        failed = -1;
    }
    if (failed) {
        sr_config_free_nodes(nodes, n);
        return;
    }
    sr_config_free_nodes(c->s.cfg.upstream.nodes, c->s.cfg.upstream.n_nodes);
    c->s.cfg.upstream.nodes = nodes;
    c->s.cfg.upstream.n_nodes = n;
}

/* "a, b or c" */
static void join_names(const char *const *names, char *buf, size_t n)
{
    size_t len = 0, count = 0;
    while (names[count]) count++;
    buf[0] = '\0';
    for (size_t i = 0; i < count && len < n; i++) {
        const char *sep = i == 0 ? "" : i + 1 == count ? " or " : ", ";
        len += (size_t)snprintf(buf + len, n - len, "%s%s", sep, names[i]);
    }
}

/* Remembers that `key` is empty because x's first unset variable was missing (a key
 * bound twice keeps one entry). Returns 0 or -ENOMEM. */
static int note_unset_env(struct sr_config *cfg, const char *key,
                          const struct sr_config_expanded *x)
{
    struct sr_config_unset_env *e = NULL, *v;
    char *name = strndup(x->unset_name, x->unset_name_len);
    if (!name) return -ENOMEM;
    for (size_t i = 0; i < cfg->n_unset_env && !e; i++)
        if (strcmp(cfg->unset_env[i].key, key) == 0) e = &cfg->unset_env[i];
    if (!e) {
        v = realloc(cfg->unset_env, (cfg->n_unset_env + 1) * sizeof(*v));
        if (!v) {
            free(name);
            return -ENOMEM;
        }
        cfg->unset_env = v;
        e = &v[cfg->n_unset_env++];
        e->name = NULL;
    }
    free(e->name);
    e->key = key;
    e->name = name;
    return 0;
}

static void bind_leaf(struct ctx *c, size_t ki, const yaml_node_t *v, const char *path)
{
    const struct sr_config_key *k = &c->keys[ki];
    void *field = (char *)&c->s + k->off;
    struct sr_config_expanded x = {0};
    const char *why;
    char note[512], list[128], *addr;
    int errors = c->errors, rc, level;
    bool b;

    if (k->type == K_NODES) {
        bind_nodes(c, v, path);
        goto check;
    }
    if (v->type != YAML_SCALAR_NODE) {
        report(c, v, path, "must be a scalar, not a %s", kind_name(v));
        goto done;
    }
    if (sr_config_expand((const char *)v->data.scalar.value, v->data.scalar.length, &x, &why)) {
        report(c, v, path, "%s", why);
        goto done;
    }
    if (x.text[0] == '\0' && k->type != K_STRING) { /* a string may be empty: "off" */
        report(c, v, path, "%s",
               x.placeholders ? "empty value after substituting ${...}" : "missing value");
        goto done;
    }
    env_note(&x, false, note, sizeof note);
    switch (k->type) {
    case K_BOOL:
        if (sr_config_value_bool(x.text, &b) != 0)
            report(c, v, path, "invalid boolean '%s' (expected true/false, yes/no or on/off)%s",
                   x.text, note);
        else
            *(bool *)field = b;
        break;
    case K_U32:
    case K_SIZE:
    case K_DURATION:
        bind_number(c, k, v, path, &x);
        break;
    case K_LISTEN:
        rc = sr_config_listen_address(x.text, &addr, &why);
        if (rc == -ENOMEM) {
            report(c, v, path, "out of memory");
        } else if (rc != 0) {
            report(c, v, path, "'%s': %s%s", x.text, why, note);
        } else {
            char **dst = (char **)field;
            if (!sr_config_is_default_string(*dst)) free(*dst);
            *dst = addr;
        }
        break;
    case K_EXPORT: {
        char *items = strdup(x.text), *save = NULL, *tok;
        bool prom = false, ms = false, bad = false;
        if (!items) {
            report(c, v, path, "out of memory");
            break;
        }
        for (tok = strtok_r(items, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
            if (strcmp(tok, "prometheus") == 0)
                prom = true;
            else if (strcmp(tok, "metrics_service") == 0)
                ms = true;
            else if (strcmp(tok, "none") != 0 && !bad) {
                report(c, v, path, "unknown export '%s' (expected prometheus, metrics_service or none)%s",
                       tok, note);
                bad = true;
            }
        }
        free(items);
        c->s.cfg.telemetry.export_prometheus = prom;
        c->s.cfg.telemetry.export_metrics_service = ms;
        break;
    }
    case K_STRING: {
        char **dst = (char **)((char *)&c->s + k->off);
        char *copy = x.text[0] ? strdup(x.text) : NULL;
        if (x.text[0] && !copy) {
            report(c, v, path, "out of memory");
            break;
        }
        if (!sr_config_is_default_string(*dst)) free(*dst);
        *dst = copy;
        if (!copy && x.unset_name && note_unset_env(&c->s.cfg, k->path, &x) != 0)
            report(c, v, path, "out of memory");
        break;
    }
    case K_LEVEL:
        level = sr_config_value_log_level(x.text);
        if (level < 0)
            report(c, v, path, "unknown log level '%s' (expected error, warn, info or debug)%s",
                   x.text, note);
        else
            *(int *)field = level;
        break;
    case K_ENUM:
        level = -1;
        for (int i = 0; k->names[i] && level < 0; i++)
            if (strcmp(k->names[i], x.text) == 0) level = i;
        join_names(k->names, list, sizeof list);
        if (level < 0)
            report(c, v, path, "unknown value '%s' (expected %s)%s", x.text, list, note);
        else
            *(int *)field = level;
        break;
    case K_NODES:
        break;
    }
check:
    if (c->errors != errors) goto done;
    c->seen[ki].set = true;
    c->seen[ki].line = v->start_mark.line + 1;
    c->seen[ki].col = v->start_mark.column + 1;
done:
    free(x.text);
}

static void bind_map(struct ctx *c, const yaml_node_t *map, const char *prefix)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        const yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
        const yaml_node_t *first = NULL;
        char path[256];
        int ki;

        if (k->type != YAML_SCALAR_NODE) {
            report(c, k, *prefix ? prefix : NULL, "a key must be a scalar, not a %s",
                  kind_name(k));
            continue;
        }
        snprintf(path, sizeof path, "%s%s%.*s", prefix, *prefix ? "." : "",
                 (int)k->data.scalar.length, (const char *)k->data.scalar.value);
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p && !first; q++) {
            const yaml_node_t *qk = yaml_document_get_node(c->doc, q->key);
            if (qk->type == YAML_SCALAR_NODE && qk->data.scalar.length == k->data.scalar.length &&
                memcmp(qk->data.scalar.value, k->data.scalar.value, k->data.scalar.length) == 0)
                first = qk;
        }
        if (first) {
            report(c, k, path, "duplicate key (first at %zu:%zu)", first->start_mark.line + 1,
                   first->start_mark.column + 1);
        } else if ((ki = find_key(path)) >= 0) {
            bind_leaf(c, (size_t)ki, v, path);
        } else if (!is_section(path)) {
            report(c, k, path, "unknown key");
        } else if (v->type == YAML_MAPPING_NODE) {
            bind_map(c, v, path);
        } else if (!is_null(v)) {
            report(c, v, path, "must be a mapping, not a %s", kind_name(v));
        }
    }
}

static size_t field_size(const struct sr_config_key *k)
{
    switch (k->type) {
    case K_BOOL: return sizeof(bool);
    case K_SIZE: return sizeof(uint64_t);
    case K_U32:
    case K_DURATION: return sizeof(uint32_t);
    case K_ENUM:
    case K_LEVEL: return sizeof(int);
    default: return sizeof(char *);
    }
}

/* Every pipe setting that pipes.<name> leaves unset comes from, highest first:
 * the pipe's built-in specific (sr_config_defaults sets it apart from the
 * generic default: it counts as written under pipes.<name>), pipe_defaults,
 * the top-level queue (queue keys), the built-in default. Driven by the
 * pipe_defaults rows of `keys`, whose offsets mirror struct sr_pipe_config. */
static void resolve_pipes(struct ctx *c)
{
    struct sr_pipe_config generic;
    const size_t pd = SR_CFG_OFF(pd), q0 = offsetof(struct sr_pipe_config, queue);
    const struct sr_config_key *keys = c->keys;
    size_t n_keys = c->n_keys;
    struct sr_config builtin; /* allocates nothing */

    sr_config_generic_pipe(&generic);
    sr_config_defaults(&builtin);
    for (size_t ki = 0; ki < n_keys; ki++) {
        size_t rel = keys[ki].off - pd, size = field_size(&keys[ki]);
        if (keys[ki].off < pd || rel >= sizeof(struct sr_pipe_config)) continue;
        bool from_queue = rel >= q0 && rel < q0 + sizeof(struct sr_queue_config);
        for (int i = 0; i < SR_PIPE_COUNT; i++) {
            char *dst = (char *)&c->s.cfg.pipes[i] + rel;
            const char *src = NULL;
            if (key_set(c, dst) ||
                memcmp((const char *)&builtin.pipes[i] + rel, (const char *)&generic + rel, size))
                continue;
            if (c->seen[ki].set)
                src = (const char *)&c->s.pd + rel;
            else if (from_queue && key_set(c, (char *)&c->s.queue + (rel - q0)))
                src = (const char *)&c->s.queue + (rel - q0);
            if (src) memcpy(dst, src, size);
        }
    }
}

/* sr_config_tls_check's report: at the place of the key that is set. */
static void tls_problem(void *arg, const char *key, const char *reason)
{
    struct ctx *c = arg;
    int ki = find_key(key);
    report_at(c, ki >= 0 ? c->seen[ki].line : 0, ki >= 0 ? c->seen[ki].col : 0, key, "%s", reason);
}

/* After the walk: the per-pipe settings, and the checks that involve more than one key. */
static void finish(struct ctx *c)
{
    struct sr_config *cfg = &c->s.cfg;
    char a[32], b[32];

    resolve_pipes(c);

    /* only on an otherwise valid config: a rejected value would compare as its default */
    if (c->errors) return;
    if (cfg->upstream.backoff_max_ms < cfg->upstream.backoff_initial_ms) {
        int ki = find_key("upstream.backoff_max");
        if (!c->seen[ki].set) ki = find_key("upstream.backoff_initial");
        sr_config_format_duration(cfg->upstream.backoff_max_ms, a, sizeof a);
        sr_config_format_duration(cfg->upstream.backoff_initial_ms, b, sizeof b);
        report_at(c, c->seen[ki].line, c->seen[ki].col, c->keys[ki].path,
                  "upstream.backoff_max (%s) must not be less than upstream.backoff_initial (%s)",
                  a, b);
    }
    sr_config_tls_check(cfg, tls_problem, c);
}

/* libyaml stops at the first syntax error: report it where it is. */
static void syntax_error(struct ctx *c, const yaml_parser_t *p, const char *text, size_t len)
{
    size_t line = p->problem_mark.line + 1, col = p->problem_mark.column + 1;

    if (p->error == YAML_MEMORY_ERROR) {
        report_at(c, 0, 0, NULL, "out of memory");
        return;
    }
    if (p->error == YAML_READER_ERROR) { /* only a byte offset is known */
        line = 1;
        col = 1;
        for (size_t i = 0; i < p->problem_offset && i < len; i++) {
            if (text[i] == '\n') {
                line++;
                col = 1;
            } else if (((unsigned char)text[i] & 0xC0) != 0x80) {
                col++;
            }
        }
    }
    if (p->context)
        report_at(c, line, col, NULL, "syntax error: %s (%s at %zu:%zu)",
                  p->problem ? p->problem : "?", p->context, p->context_mark.line + 1,
                  p->context_mark.column + 1);
    else
        report_at(c, line, col, NULL, "syntax error: %s", p->problem ? p->problem : "?");
}

int sr_config_load_string(struct sr_config *cfg, const char *name, const char *text, size_t len,
                          FILE *err)
{
    struct ctx c;
    yaml_parser_t parser;
    yaml_document_t doc, extra;
    bool have_parser = false, have_doc = false;
    const yaml_node_t *root;
    int rc = -1;

    sr_config_defaults(cfg);
    memset(&c, 0, sizeof c);
    c.keys = sr_config_keys(&c.n_keys);
    c.seen = calloc(c.n_keys, sizeof(*c.seen));
    c.name = name;
    c.err = err;
    c.doc = &doc;
    sr_config_defaults(&c.s.cfg);
    {
        struct sr_pipe_config g;
        sr_config_generic_pipe(&g);
        c.s.queue = g.queue;
    }
    if (!c.seen) {
        report_at(&c, 0, 0, NULL, "out of memory");
        return -1;
    }

    if (!yaml_parser_initialize(&parser)) {
        report_at(&c, 0, 0, NULL, "out of memory");
        goto done;
    }
    have_parser = true;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        syntax_error(&c, &parser, text, len);
        goto done;
    }
    have_doc = true;

    root = yaml_document_get_root_node(&doc);
    if (root && root->type == YAML_MAPPING_NODE)
        bind_map(&c, root, "");
    else if (root && !is_null(root))
        report(&c, root, NULL, "the document must be a mapping, not a %s", kind_name(root));

    if (root) { /* a second document would be silently ignored: refuse it */
        if (!yaml_parser_load(&parser, &extra)) {
            syntax_error(&c, &parser, text, len);
        } else {
            const yaml_node_t *r2 = yaml_document_get_root_node(&extra);
            if (r2) report(&c, r2, NULL, "only one YAML document is allowed");
            yaml_document_delete(&extra);
        }
    }

    finish(&c);
    if (c.errors) goto done;
    c.s.cfg.path = strdup(name);
    if (!c.s.cfg.path) {
        report_at(&c, 0, 0, NULL, "out of memory");
        goto done;
    }
    *cfg = c.s.cfg;
    memset(&c.s.cfg, 0, sizeof c.s.cfg); /* moved */
    rc = 0;
done:
    free(c.seen);
    sr_config_deinit(&c.s.cfg);
    if (have_doc) yaml_document_delete(&doc);
    if (have_parser) yaml_parser_delete(&parser);
    return rc;
}

int sr_config_load(struct sr_config *cfg, const char *path, FILE *err)
{
    FILE *f = fopen(path, "rb");
    struct sr_buf text;
    int rc = -1;

    sr_buf_init(&text);
    sr_config_defaults(cfg);
    if (!f) goto io_error;
    for (;;) {
        size_t n;
        if (sr_buf_reserve(&text, 16384) != 0) {
            errno = ENOMEM;
            goto io_error;
        }
        n = fread(text.p + text.len, 1, text.cap - text.len - 1, f);
        text.len += n;
        if (n == 0) break;
    }
    if (ferror(f)) goto io_error;
    rc = sr_config_load_string(cfg, path, text.p, text.len, err);
    goto done;
io_error:
    if (err) fprintf(err, "%s: cannot read: %s\n", path, strerror(errno));
done:
    if (f) fclose(f);
    sr_buf_free(&text);
    return rc;
}
