/* Scalar parsers shared by the config loader; internal to src/config.
 *
 * They work on text that placeholders have already been substituted into,
 * and know nothing of YAML or key paths: the loader (config.c) turns their
 * outcome into "file:line:col: key: reason" lines. */
#ifndef SKYRELAY_CONFIG_INTERNAL_H
#define SKYRELAY_CONFIG_INTERNAL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "skyrelay/config.h"

/* Parse outcomes (the project's convention: 0 or a negative errno): 0,
 * SR_CFG_EINVAL (not the expected syntax) or SR_CFG_ERANGE (well-formed but
 * does not fit in 64 bits). */
#define SR_CFG_EINVAL (-EINVAL)
#define SR_CFG_ERANGE (-ERANGE)

/* true/false, yes/no, on/off (any case). */
int sr_config_value_bool(const char *s, bool *out);

/* A plain decimal integer: digits only, no sign. */
int sr_config_value_uint(const char *s, uint64_t *out);

/* Bytes: "512", "512B", "64KB" (1000), "64KiB" (1024), MB/MiB, GB/GiB, TB/TiB. */
int sr_config_value_size(const char *s, uint64_t *out);

/* Milliseconds: a bare integer is ms; otherwise one or more <integer><unit>
 * with unit ms, s, m or h ("250ms", "5s", "1m30s"). */
int sr_config_value_duration(const char *s, uint64_t *out_ms);

/* error|warn|warning|info|debug, plus Satellite's (logrus) trace -> debug and
 * fatal|panic -> error, any case. Returns the enum sr_log_level or -1. */
int sr_config_value_log_level(const char *s);

/* Writes v as the largest unit that divides it exactly ("64MiB", "1m", "250ms"). */
void sr_config_format_size(uint64_t v, char *buf, size_t n);
void sr_config_format_duration(uint64_t ms, char *buf, size_t n);

/* ---- the schema: one row per leaf key (config.c `keys`) ---- */

enum sr_config_ktype {
    K_BOOL,
    K_U32,      /* uint32_t */
    K_SIZE,     /* uint64_t bytes */
    K_DURATION, /* uint32_t milliseconds */
    K_LISTEN,   /* char *, a listen address */
    K_STRING,   /* char *, owned, NULL = empty */
    K_EXPORT,   /* telemetry.export: comma list of prometheus, metrics_service, none */
    K_NODES,    /* upstream.nodes / n_nodes */
    K_LEVEL,    /* int, enum sr_log_level */
    K_ENUM,     /* int, index into names */
};

struct sr_config_key {
    const char *path; /* dotted: "pipes.meter.sender.linger" */
    enum sr_config_ktype type;
    size_t off; /* into the loader's scratch, which starts with the struct sr_config */
    uint64_t min, max;
    const char *const *names; /* K_ENUM: NULL-terminated */
};

/* The table, in file order; *n gets its length. Static storage. */
const struct sr_config_key *sr_config_keys(size_t *n);

/* The field of cfg that row k binds (borrowed from cfg), or NULL when k only supplies
 * defaults of every pipe (top-level queue.max_events/max_bytes/full_wait, pipe_defaults.*):
 * their effect is in the pipes' own fields. */
const void *sr_config_key_field(const struct sr_config *cfg, const struct sr_config_key *k);

/* Result of placeholder substitution. */
struct sr_config_expanded {
    char *text;           /* owned, NUL-terminated, surrounding whitespace trimmed */
    int placeholders;     /* how many ${...} were substituted */
    const char *env_name; /* borrows the input: first placeholder whose value came from the
                             environment, NULL if none */
    size_t env_name_len;
    const char *unset_name; /* borrows the input: first placeholder whose variable was unset
                               or empty (its default, if any, was taken), NULL if none */
    size_t unset_name_len;
};

/* Substitutes every ${NAME} / ${NAME:default} in in[0..len). An unset or empty
 * variable takes the default (empty when there is none); a default may itself
 * hold placeholders; a value wrapped in double quotes loses them (Satellite).
 * Returns 0, or -1 with a reason (static string) in *why. */
int sr_config_expand(const char *in, size_t len, struct sr_config_expanded *out, const char **why);

/* Validates a listen address "host:port", "[v6]:port" or ":port" (port 0..65535)
 * and returns an owned normalized copy (":port" becomes "0.0.0.0:port") in *out.
 * Returns 0, -1 with *why, or -ENOMEM. */
int sr_config_listen_address(const char *s, char **out, const char **why);

/* sr_config_parse_nodes on list[0..len), which also points *bad and *bad_len at the
 * offending entry on error (bad_len 0 for an empty entry). -ENOMEM when out of memory. */
int sr_config_nodes_append(const char *list, size_t len, struct sr_node_config **nodes,
                           size_t *n_nodes, const char **why, const char **bad, size_t *bad_len);

/* Values are bound into this scratch copy (src/config/load.c); the key table's offsets are
 * into it (SR_CFG_OFF). It also holds the sections that only supply defaults of every pipe,
 * the top-level `queue:` and `pipe_defaults:`. */
struct sr_config_scratch {
    struct sr_config cfg;         /* first: a key of cfg has the same offset in both */
    struct sr_queue_config queue; /* top-level `queue:`: the default of every pipe */
    struct sr_pipe_config pd;     /* `pipe_defaults:` (queue, sender, routing; set keys only) */
};
#define SR_CFG_OFF(member) offsetof(struct sr_config_scratch, member)

/* A pipe's built-in queue, sender and routing, before any pipe specifics. */
void sr_config_generic_pipe(struct sr_pipe_config *out);

/* Writes the value of row k in cfg as --print-config does (secrets redacted). */
void sr_config_put_value(FILE *out, const struct sr_config *cfg, const struct sr_config_key *k);

/* True for the built-in static strings of sr_config_defaults (never freed). */
bool sr_config_is_default_string(const char *p);

/* The TLS settings that only make sense together (src/config/tls_check.c): calls
 * bad(arg, key, reason) once per problem, naming the key that is set (its place is the
 * one reported); reason is a static string. Returns the number of problems. Pure. */
int sr_config_tls_check(const struct sr_config *cfg,
                        void (*bad)(void *arg, const char *key, const char *reason), void *arg);

/* Frees a node list the loader allocated (not the built-in default list). */
void sr_config_free_nodes(struct sr_node_config *nodes, size_t n);

#endif
