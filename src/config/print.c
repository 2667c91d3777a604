/* skyrelay --print-config: the effective configuration as YAML.
 *
 * The output is driven by the loader's key table, so a key added there is
 * printed without touching this file. Every row that binds a field of
 * struct sr_config is printed, all pipes in full; the rows that only supply
 * defaults (top-level queue.max_events/max_bytes/full_wait, pipe_defaults.*)
 * are not, since their effect is already in every pipe. The rows are grouped
 * into nested mappings by their dotted paths, each section once, in the
 * table's order. Values are written in a form the loader reads back to the
 * same config, except the secrets, which are printed as <redacted>. */
#include <stdint.h>
#include <string.h>

#include "internal.h"
#include "skyrelay/config.h"
#include "skyrelay/log.h"

static const char *const secrets[] = {"server.authentication", "upstream.authentication",
                                      "telemetry.admin.token"};

static bool is_secret(const char *path)
{
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++)
        if (strcmp(secrets[i], path) == 0) return true;
    return false;
}

/* The code point of the UTF-8 sequence at s and its length, or 0 when it is not valid. */
static size_t utf8_decode(const unsigned char *s, uint32_t *cp)
{
    size_t n = s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC2 ? 2 : 0;
    uint32_t v = n == 4 ? s[0] & 0x07u : n == 3 ? s[0] & 0x0Fu : s[0] & 0x1Fu;
    if (n == 0 || s[0] > 0xF4) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = v << 6 | (s[i] & 0x3Fu);
    }
    if ((n == 3 && v < 0x800) || (n == 4 && (v < 0x10000 || v > 0x10FFFF)) ||
        (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return n;
}

/* What libyaml reads back as written inside a double-quoted scalar: printable and not a
 * line break (NEL, LS, PS would be folded into a space) nor a byte order mark. */
static bool plain_code_point(uint32_t cp)
{
    return (cp >= 0xA0 && cp <= 0xD7FF && cp != 0x2028 && cp != 0x2029) ||
           (cp >= 0xE000 && cp <= 0xFFFD && cp != 0xFEFF) || (cp >= 0x10000 && cp <= 0x10FFFF);
}

/* A YAML double-quoted scalar that libyaml reads back to the same bytes. */
static void put_quoted(FILE *out, const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    fputc('"', out);
    while (*s) {
        uint32_t cp;
        size_t n;
        if (*s == '"' || *s == '\\') {
            fprintf(out, "\\%c", *s++);
        } else if (*s < 0x20 || *s == 0x7f) {
            fprintf(out, "\\x%02x", *s++);
        } else if (*s < 0x80) {
            fputc(*s++, out);
        } else if ((n = utf8_decode(s, &cp)) == 0) {
            fputc(*s++, out); /* not UTF-8 (only an environment variable can do that) */
        } else if (plain_code_point(cp)) {
            fwrite(s, 1, n, out);
            s += n;
        } else {
            fprintf(out, cp > 0xFFFF ? "\\U%08x" : "\\u%04x", (unsigned)cp);
            s += n;
        }
    }
    fputc('"', out);
}

static void put_string(FILE *out, const struct sr_config_key *k, const char *s)
{
    if (s && is_secret(k->path)) {
        fputs("\"<redacted>\"", out);
        return;
    }
    put_quoted(out, s ? s : "");
    /* there is no escape for "${": such a value (only a placeholder's result can hold
     * one) would be read back as a placeholder */
    if (s && strstr(s, "${")) fputs("  # holds \"${\": a reload substitutes it", out);
}

static void put_value(FILE *out, const struct sr_config *cfg, const struct sr_config_key *k,
                      const void *f)
{
    static const char *const levels[] = {
        [SR_LOG_ERROR] = "error", [SR_LOG_WARN] = "warn", [SR_LOG_INFO] = "info",
        [SR_LOG_DEBUG] = "debug"};
    char buf[64];
    int v;

    switch (k->type) {
    case K_BOOL:
        fputs(*(const bool *)f ? "true" : "false", out);
        break;
    case K_U32:
        fprintf(out, "%u", (unsigned)*(const uint32_t *)f);
        break;
    case K_SIZE:
        sr_config_format_size(*(const uint64_t *)f, buf, sizeof buf);
        fputs(buf, out);
        break;
    case K_DURATION:
        sr_config_format_duration(*(const uint32_t *)f, buf, sizeof buf);
        fputs(buf, out);
        break;
    case K_LISTEN:
    case K_STRING:
        put_string(out, k, *(char *const *)f);
        break;
    case K_EXPORT:
        fputs(cfg->telemetry.export_prometheus && cfg->telemetry.export_metrics_service
                  ? "prometheus,metrics_service"
              : cfg->telemetry.export_prometheus      ? "prometheus"
              : cfg->telemetry.export_metrics_service ? "metrics_service"
                                                      : "none",
              out);
        break;
    case K_NODES:
        fputc('[', out);
        for (size_t i = 0; i < cfg->upstream.n_nodes; i++) {
            const struct sr_node_config *n = &cfg->upstream.nodes[i];
            if (i) fputs(", ", out);
            if (n->weight == 1) {
                put_quoted(out, n->address);
            } else {
                snprintf(buf, sizeof buf, "#%u", (unsigned)n->weight);
                fprintf(out, "\"%s%s\"", n->address, buf); /* a valid address needs no escape */
            }
        }
        fputc(']', out);
        break;
    case K_LEVEL:
        v = *(const int *)f;
        fputs(v >= SR_LOG_ERROR && v <= SR_LOG_DEBUG ? levels[v] : "info", out);
        break;
    case K_ENUM: {
        int n = 0;
        v = *(const int *)f;
        while (k->names[n]) n++;
        fputs(v >= 0 && v < n ? k->names[v] : "?", out);
        break;
    }
    }
}

void sr_config_put_value(FILE *out, const struct sr_config *cfg, const struct sr_config_key *k)
{
    const void *f = sr_config_key_field(cfg, k);
    if (f) put_value(out, cfg, k, f);
}

static bool printable(const struct sr_config *cfg, const struct sr_config_key *k)
{
    return sr_config_key_field(cfg, k) != NULL;
}

/* Whether row j (before i) starts the same entry, path[plen, plen + len), under prefix. */
static bool same_entry(const struct sr_config_key *a, const struct sr_config_key *b, size_t plen,
                       size_t len)
{
    return strncmp(a->path, b->path, plen + len) == 0 &&
           (b->path[plen + len] == '.' || b->path[plen + len] == '\0');
}

/* Prints the entries under `prefix` (plen bytes, "" or "a.b."), each once. */
static void put_section(FILE *out, const struct sr_config *cfg, const struct sr_config_key *keys,
                        size_t n, const char *prefix, size_t plen, int depth)
{
    for (size_t i = 0; i < n; i++) {
        const struct sr_config_key *k = &keys[i];
        const char *seg = k->path + plen;
        size_t len;
        bool seen = false;

        if (!printable(cfg, k) || strncmp(k->path, prefix, plen) != 0) continue;
        len = strcspn(seg, ".");
        for (size_t j = 0; j < i && !seen; j++)
            seen = printable(cfg, &keys[j]) && same_entry(k, &keys[j], plen, len);
        if (seen) continue;
        fprintf(out, "%*s%.*s:", depth * 2, "", (int)len, seg);
        if (seg[len] == '\0') {
            fputc(' ', out);
            put_value(out, cfg, k, sr_config_key_field(cfg, k));
            fputc('\n', out);
        } else {
            fputc('\n', out);
            put_section(out, cfg, keys, n, k->path, plen + len + 1, depth + 1);
        }
    }
}

int sr_config_print(const struct sr_config *cfg, FILE *out)
{
    size_t n;
    const struct sr_config_key *keys = sr_config_keys(&n);

    fprintf(out,
            "# skyrelay --print-config%s%s: the effective configuration, placeholders\n"
            "# substituted, defaults filled in, every pipe in full. Secrets are <redacted>.\n",
            cfg->path ? " --config " : "", cfg->path ? cfg->path : "");
    put_section(out, cfg, keys, n, "", 0, 0);
    fflush(out);
    return ferror(out) ? -1 : 0;
}
