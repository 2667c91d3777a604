/* The object table of one Kubernetes namespace: the name of each pod or
 * EndpointSlice that contributes node addresses, and those addresses. Its own
 * file because it is plain data, no Kubernetes or HTTP: kubernetes.c applies
 * list answers and watch events to it and publishes the union of its sets.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "k8s_internal.h"

struct sr_k8s_object *sr_k8s_table_find(struct sr_k8s_table *t, const char *name)
{
    for (size_t i = 0; i < t->n; i++) /* OAP clusters are tens of pods: linear is fine */
        if (strcmp(t->v[i].name, name) == 0) return &t->v[i];
    return NULL;
}

bool sr_k8s_table_remove(struct sr_k8s_table *t, const char *name)
{
    struct sr_k8s_object *o = sr_k8s_table_find(t, name);
    if (!o) return false;
    free(o->name);
    sr_k8s_strv_clear(&o->addrs);
    *o = t->v[--t->n];
    return true;
}

int sr_k8s_table_set(struct sr_k8s_table *t, const char *name, struct sr_k8s_strv *addrs)
{
    struct sr_k8s_object *o = sr_k8s_table_find(t, name);
    int rc;
    if (addrs->n == 0) {
        sr_k8s_strv_clear(addrs);
        return sr_k8s_table_remove(t, name) ? 1 : 0;
    }
    if (o) {
        rc = sr_k8s_strv_equal(&o->addrs, addrs) ? 0 : 1;
        sr_k8s_strv_clear(&o->addrs);
        o->addrs = *addrs;
        return rc;
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        struct sr_k8s_object *v = realloc(t->v, cap * sizeof(*v));
        if (!v) goto fail;
        t->v = v;
        t->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy) goto fail;
    t->v[t->n].name = copy;
    t->v[t->n].addrs = *addrs;
    t->n++;
    return 1;
fail:
    sr_k8s_strv_clear(addrs);
    return -1;
}

void sr_k8s_table_clear(struct sr_k8s_table *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->v[i].name);
        sr_k8s_strv_clear(&t->v[i].addrs);
    }
    free(t->v);
    memset(t, 0, sizeof(*t));
}
