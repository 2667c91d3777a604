/* Connection limit by interposing accept4(2).
 *
 * gRPC 1.51 has no connection limit, and its accept loop is private. But it
 * (like libuv) calls accept4 through the PLT, and the dynamic linker resolves
 * that to the executable's definition first: the accept4 below sees every
 * accept in the process. It does the real accept with a raw syscall (so it
 * depends on no other definition: libc's, or ASan's interceptor in the unit
 * tests) and acts only on the gRPC listening port; any other socket (the admin
 * HTTP listener) passes straight through, as does everything before
 * sr_conn_limit_init and after sr_conn_limit_shutdown.
 *
 * Over the limit, the new connection is closed at once (before any TLS or
 * HTTP/2 byte) and the next pending one is tried, so the caller only ever gets
 * an admitted fd or the real error (EAGAIN): gRPC's edge-triggered loop never
 * leaves connections in the backlog.
 *
 * An admitted connection is counted live until it closes. To see that without
 * touching gRPC's I/O, a dup of the fd sits in a private epoll set for
 * EPOLLRDHUP|EPOLLHUP only (no EPOLLIN, so no data is consumed or reported);
 * the monitor thread then drops the dup. Every way a TCP connection ends (FIN,
 * RST, keepalive or retransmission timeout) gives one of the two. EPOLLERR
 * alone is no end (it also signals gRPC's error-queue notifications, should it
 * use zerocopy or timestamps): ignored, and edge-triggered so it cannot spin.
 * gRPC closes a connection with shutdown(SHUT_RDWR) + close; shutdown acts on
 * the socket, not the fd, so the dup sees HUP and never holds a connection
 * open. One gRPC path closes without shutdown (a connection dropped right
 * after accept under memory pressure): a sweep every SWEEP_MS finds the
 * original fd gone (or reused by another socket: the fstat inode differs) and
 * drops the dup.
 *
 * Two more things protect gRPC's listener, which 1.51 abandons for good on
 * any accept4 error other than EAGAIN/EINTR: per-connection errors that the
 * kernel reports through accept (ECONNABORTED, EPROTO, network errors) are
 * skipped, and when the process is out of file descriptors a spare fd is
 * given up to accept and refuse the pending connections (libuv's trick) and
 * EAGAIN is returned. Each admitted connection costs 2 fds, so init raises the
 * soft RLIMIT_NOFILE to 2 * max + FD_RESERVE when the hard limit allows. */
#define accept4 sr_libc_accept4_decl /* ours has a plain prototype, glibc's a transparent union */
#include <sys/socket.h>
#undef accept4

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "skyrelay/conn_limit.h"
#include "skyrelay/log.h"

int accept4(int sockfd, struct sockaddr *addr, socklen_t *addrlen, int flags);

#define SWEEP_MS 1000
#define FD_RESERVE 1024 /* fds beyond 2 per connection: upstreams, logs, admin */
#define N_LISTEN_FDS 8  /* a port can have several listening fds (v4 + v6) */
#define MAX_SKIPPED 64  /* per-connection accept errors in a row */
#define WAKE_TAG UINT64_MAX

struct watch {
    int orig; /* the fd handed to the caller; -1 = slot free */
    dev_t dev;
    ino_t ino;
};

/* Read lock-free by accept4 and the stats. */
static atomic_bool running;
static _Atomic uint32_t max_live; /* 0 = no limit, count only */
static atomic_int limit_port;     /* 0 = none */
/* fd + 1 of the listening sockets known to be on the port; 0 = free slot */
static atomic_int listen_fds[N_LISTEN_FDS];
static _Atomic uint64_t n_live, n_accepted, n_refused, n_closed;

/* Under mu: the epoll set and the watched dups, indexed by dup fd. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int epfd = -1, wakefd = -1, spare_fd = -1;
static struct watch *watches;
static int n_watches; /* slots allocated */
static pthread_t monitor_thread;

static int real_accept4(int sockfd, struct sockaddr *addr, socklen_t *addrlen, int flags)
{
    return (int)syscall(SYS_accept4, sockfd, addr, addrlen, flags);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *peer_name(int fd, char *buf, size_t n)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char ip[INET6_ADDRSTRLEN];

    if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0) return "?";
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
        snprintf(buf, n, "%s:%u", ip, ntohs(a->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) { /* gRPC's dual-stack listener */
            inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], ip, sizeof(ip));
            snprintf(buf, n, "%s:%u", ip, ntohs(a->sin6_port));
        } else {
            inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
            snprintf(buf, n, "[%s]:%u", ip, ntohs(a->sin6_port));
        }
    } else {
        return "?";
    }
    return buf;
}

/* Is sockfd a listening socket on the limited port? Known fds are cached; the
 * cache is cleared by set_port and shutdown (gRPC keeps its listening fds until
 * the server is destroyed). */
static bool is_limited(int sockfd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int port = atomic_load(&limit_port), p;

    if (port <= 0 || sockfd < 0) return false;
    for (int i = 0; i < N_LISTEN_FDS; i++)
        if (atomic_load_explicit(&listen_fds[i], memory_order_relaxed) == sockfd + 1) return true;
    if (getsockname(sockfd, (struct sockaddr *)&ss, &len) != 0) return false;
    if (ss.ss_family == AF_INET)
        p = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    else if (ss.ss_family == AF_INET6)
        p = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    else
        return false;
    if (p != port) return false;
    for (int i = 0; i < N_LISTEN_FDS; i++) {
        int free_slot = 0;
        if (atomic_compare_exchange_strong(&listen_fds[i], &free_slot, sockfd + 1)) break;
    }
    return true;
}

static void clear_listen_fds(void)
{
    for (int i = 0; i < N_LISTEN_FDS; i++) atomic_store(&listen_fds[i], 0);
}

/* Under mu. Stops watching dup d and closes it: the connection is gone. */
static void release_locked(int d)
{
    epoll_ctl(epfd, EPOLL_CTL_DEL, d, NULL);
    close(d);
    watches[d].orig = -1;
    atomic_fetch_sub(&n_live, 1);
    atomic_fetch_add(&n_closed, 1);
}

/* Watches fd (already counted live) through a dup. Returns 0, -1 on failure
 * (errno set), 1 if the module was shut down meanwhile (leave it alone). */
static int watch(int fd)
{
    struct epoll_event ev = {.events = EPOLLRDHUP | EPOLLET}; /* + EPOLLHUP, EPOLLERR always */
    struct stat st;
    int d = -1, rc = -1;

    pthread_mutex_lock(&mu);
    if (!atomic_load(&running)) {
        rc = 1;
        goto out;
    }
    d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (d < 0 || fstat(d, &st) != 0) goto fail;
    if (d >= n_watches) {
        int n = n_watches ? n_watches : 256;
        struct watch *w;
        while (n <= d) n *= 2;
        w = realloc(watches, (size_t)n * sizeof(*w));
        if (!w) goto fail;
        for (int i = n_watches; i < n; i++) w[i].orig = -1;
        watches = w;
        n_watches = n;
    }
    ev.data.u64 = (uint64_t)d;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, d, &ev) != 0) goto fail;
    watches[d] = (struct watch){.orig = fd, .dev = st.st_dev, .ino = st.st_ino};
    rc = 0;
    goto out;
fail:
    if (d >= 0) {
        int e = errno;
        close(d);
        errno = e;
    }
out:
    pthread_mutex_unlock(&mu);
    return rc;
}

/* Out of fds with connections pending: give up the spare fd to accept and
 * close them, so that the caller gets EAGAIN instead of EMFILE. Returns the
 * number refused. */
static unsigned refuse_pending_without_fds(int sockfd)
{
    unsigned n = 0;

    pthread_mutex_lock(&mu);
    if (!atomic_load(&running)) {
        pthread_mutex_unlock(&mu);
        return 0;
    }
    if (spare_fd < 0) spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC); /* lost last time */
    while (spare_fd >= 0) {
        int fd;
        close(spare_fd);
        fd = real_accept4(sockfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0) close(fd);
        spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0) break;
        n++;
    }
    pthread_mutex_unlock(&mu);
    atomic_fetch_add(&n_refused, n);
    return n;
}

/* The kernel reports some errors of one pending connection through accept;
 * the listener is fine (accept(2), "Error handling"). */
static bool per_connection_error(int e)
{
    switch (e) {
    case ECONNABORTED:
    case EPROTO:
    case ENOPROTOOPT:
    case ENETDOWN:
    case ENONET:
    case EHOSTDOWN:
    case EHOSTUNREACH:
    case ENETUNREACH:
    case EOPNOTSUPP:
        return true;
    default:
        return false;
    }
}

int accept4(int sockfd, struct sockaddr *addr, socklen_t *addrlen, int flags)
{
    socklen_t len0 = addrlen ? *addrlen : 0;
    char peer[INET6_ADDRSTRLEN + 8];

    if (!atomic_load_explicit(&running, memory_order_acquire) || !is_limited(sockfd))
        return real_accept4(sockfd, addr, addrlen, flags);

    for (unsigned skipped = 0;;) {
        uint32_t max = atomic_load(&max_live);
        uint64_t live;
        int fd, w;

        if (addrlen) *addrlen = len0; /* a refused connection's accept wrote them */
        fd = real_accept4(sockfd, addr, addrlen, flags);
        if (fd < 0) {
            int e = errno;
            if (per_connection_error(e) && ++skipped < MAX_SKIPPED) continue;
            if (e == EMFILE || e == ENFILE) {
                unsigned n = refuse_pending_without_fds(sockfd);
                SR_LOG_RL(SR_LOG_ERROR, "conn_limit",
                          "out of file descriptors (%s): refused %u pending connection(s); "
                          "raise the open files limit (ulimit -n) or lower "
                          "server.max_connections",
                          strerror(e), n);
                e = EAGAIN; /* gRPC 1.51 stops listening on any other error */
            } else if (e == ENOBUFS || e == ENOMEM) {
                SR_LOG_RL(SR_LOG_ERROR, "conn_limit", "accept: %s", strerror(e));
                e = EAGAIN; /* likewise: try again at the next connection */
            } else if (per_connection_error(e)) {
                e = EAGAIN; /* no end of them: try at the next event */
            }
            errno = e;
            return -1;
        }

        live = atomic_load(&n_live);
        do {
            if (max && live >= max) break;
        } while (!atomic_compare_exchange_weak(&n_live, &live, live + 1));
        if (max && live >= max) {
            atomic_fetch_add(&n_refused, 1);
            SR_LOG_RL(SR_LOG_WARN, "conn_limit",
                      "refused connection from %s: %llu live, server.max_connections is %u",
                      peer_name(fd, peer, sizeof(peer)), (unsigned long long)live, max);
            close(fd);
            continue;
        }

        w = watch(fd);
        if (w == 0) {
            atomic_fetch_add(&n_accepted, 1);
            return fd;
        }
        atomic_fetch_sub(&n_live, 1);
        if (w == 1) return fd; /* shut down meanwhile: pass through */
        atomic_fetch_add(&n_refused, 1);
        SR_LOG_RL(SR_LOG_ERROR, "conn_limit", "refused connection from %s: cannot watch it: %s",
                  peer_name(fd, peer, sizeof(peer)), strerror(errno));
        close(fd);
    }
}

/* Drops the dups whose original fd gRPC closed without shutdown(2). */
static void sweep(void)
{
    pthread_mutex_lock(&mu);
    for (int d = 0; d < n_watches; d++) {
        struct stat st;
        if (watches[d].orig < 0) continue;
        if (fstat(watches[d].orig, &st) != 0 || st.st_dev != watches[d].dev ||
            st.st_ino != watches[d].ino)
            release_locked(d);
    }
    pthread_mutex_unlock(&mu);
}

static void *monitor(void *arg)
{
    struct epoll_event ev[64];
    int64_t next_sweep = mono_ms() + SWEEP_MS;

    for (;;) {
        int64_t now = mono_ms();
        int n = epoll_wait(epfd, ev, 64, next_sweep > now ? (int)(next_sweep - now) : 0);
        bool stop = false;

        if (n < 0) {
            if (errno == EINTR) continue;
            SR_ERROR("conn_limit", "epoll_wait: %s; connections are no longer counted",
                     strerror(errno));
            break;
        }
        pthread_mutex_lock(&mu);
        for (int i = 0; i < n; i++) {
            uint64_t d = ev[i].data.u64;
            if (d == WAKE_TAG)
                stop = true;
            else if ((ev[i].events & (EPOLLHUP | EPOLLRDHUP)) && (int)d < n_watches &&
                     watches[d].orig >= 0)
                release_locked((int)d);
        }
        pthread_mutex_unlock(&mu);
        if (stop) break;
        if (mono_ms() >= next_sweep) {
            sweep();
            next_sweep = mono_ms() + SWEEP_MS;
        }
    }
    return arg;
}

static void raise_fd_limit(uint32_t max)
{
    struct rlimit rl;
    rlim_t need = (rlim_t)max * 2 + FD_RESERVE;

    if (max == 0 || getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= need) return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
        SR_INFO("conn_limit", "open files limit raised to %llu (2 per connection + %d)",
                (unsigned long long)rl.rlim_cur, FD_RESERVE);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need)
        SR_WARN("conn_limit",
                "open files limit %llu is below %llu (2 per connection + %d): connections "
                "will be refused before server.max_connections (%u) is reached",
                (unsigned long long)rl.rlim_cur, (unsigned long long)need, FD_RESERVE, max);
}

int sr_conn_limit_init(uint32_t max)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = WAKE_TAG};
    sigset_t all, old;
    int err;

    pthread_mutex_lock(&mu);
    if (atomic_load(&running)) {
        pthread_mutex_unlock(&mu);
        SR_ERROR("conn_limit", "already started");
        return -1;
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (epfd < 0 || wakefd < 0 || spare_fd < 0 ||
        epoll_ctl(epfd, EPOLL_CTL_ADD, wakefd, &ev) != 0) {
        SR_ERROR("conn_limit", "cannot set up: %s", strerror(errno));
        goto fail;
    }
    /* The thread starts with every signal blocked: they belong to the libuv loop. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    err = pthread_create(&monitor_thread, NULL, monitor, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err != 0) {
        SR_ERROR("conn_limit", "cannot start the monitor thread: %s", strerror(err));
        goto fail;
    }
    pthread_setname_np(monitor_thread, "sr-connlimit");
    atomic_store(&n_live, 0);
    atomic_store(&n_accepted, 0);
    atomic_store(&n_refused, 0);
    atomic_store(&n_closed, 0);
    atomic_store(&max_live, max);
    atomic_store_explicit(&running, true, memory_order_release);
    pthread_mutex_unlock(&mu);
    raise_fd_limit(max);
    return 0;
fail:
    if (epfd >= 0) close(epfd);
    if (wakefd >= 0) close(wakefd);
    if (spare_fd >= 0) close(spare_fd);
    epfd = wakefd = spare_fd = -1;
    pthread_mutex_unlock(&mu);
    return -1;
}

void sr_conn_limit_set_port(int port)
{
    clear_listen_fds();
    atomic_store(&limit_port, port > 0 && port <= 65535 ? port : 0);
}

void sr_conn_limit_stats(struct sr_conn_stats *out)
{
    out->live = atomic_load(&n_live);
    out->accepted = atomic_load(&n_accepted);
    out->refused = atomic_load(&n_refused);
    out->closed = atomic_load(&n_closed);
}

void sr_conn_limit_shutdown(void)
{
    uint64_t one = 1;
    ssize_t w;

    pthread_mutex_lock(&mu);
    if (!atomic_load(&running)) {
        pthread_mutex_unlock(&mu);
        return;
    }
    atomic_store(&running, false);
    pthread_mutex_unlock(&mu);

    w = write(wakefd, &one, sizeof(one));
    (void)w;
    pthread_join(monitor_thread, NULL);

    pthread_mutex_lock(&mu);
    for (int d = 0; d < n_watches; d++)
        if (watches[d].orig >= 0) release_locked(d);
    free(watches);
    watches = NULL;
    n_watches = 0;
    close(epfd);
    close(wakefd);
    close(spare_fd);
    epfd = wakefd = spare_fd = -1;
    pthread_mutex_unlock(&mu);
    atomic_store(&limit_port, 0);
    clear_listen_fds();
}
