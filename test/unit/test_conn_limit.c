/* Unit tests for src/server/conn_limit.c: the accept4(2) interposition, on real
 * loopback TCP sockets (no gRPC). The test binary links the library, so every
 * accept4 below is the interposed one. Waiting is only done for the monitor
 * thread (a close it must notice), by polling the counters for at most 2 s. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "skyrelay/conn_limit.h"
#include "skyrelay/log.h"

#define ACCEPT_FLAGS (SOCK_NONBLOCK | SOCK_CLOEXEC)

static int listen_loopback(int *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 128), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* A connected client (the kernel completes the handshake; the connection waits
 * in the listener's backlog), non-blocking afterwards. */
static int connect_client(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
    return fd;
}

static int local_port(int fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    return ntohs(a.sin_port);
}

static int peer_port(int fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    assert_int_equal(getpeername(fd, (struct sockaddr *)&a, &len), 0);
    return ntohs(a.sin_port);
}

/* Accepts until the listener is empty; asserts that the end is EAGAIN. */
static int accept_all(int lfd, int *fds, int max)
{
    int n = 0;
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, ACCEPT_FLAGS);
        if (fd < 0) {
            assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
            return n;
        }
        assert_true(n < max);
        fds[n++] = fd;
    }
}

/* The server closed this client's connection (EOF or reset); waits up to 2 s
 * for the FIN/RST, which on loopback is normally there already. */
static bool closed_by_server(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char c;
    ssize_t r;
    if (poll(&p, 1, 2000) != 1) return false;
    r = recv(fd, &c, 1, MSG_DONTWAIT);
    return r == 0 || (r < 0 && errno == ECONNRESET);
}

static bool still_open(int fd)
{
    char c;
    return recv(fd, &c, 1, MSG_DONTWAIT) < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

static struct sr_conn_stats stats(void)
{
    struct sr_conn_stats s;
    sr_conn_limit_stats(&s);
    return s;
}

/* The monitor thread reacts asynchronously: poll the counter, 2 s at most. */
static bool live_becomes(uint64_t want)
{
    const struct timespec tick = {0, 10 * 1000 * 1000};
    for (int i = 0; i < 200; i++) {
        if (stats().live == want) return true;
        nanosleep(&tick, NULL);
    }
    return stats().live == want;
}

static void limit_admits_max_and_refuses_the_rest_leaving_no_backlog(void **state)
{
    int port, lfd = listen_loopback(&port), c[4], s[2], still = 0;
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    (void)state;
    assert_int_equal(sr_conn_limit_init(2), 0);
    sr_conn_limit_set_port(port);
    for (int i = 0; i < 4; i++) c[i] = connect_client(port);

    s[0] = accept4(lfd, (struct sockaddr *)&a, &len, ACCEPT_FLAGS);
    assert_true(s[0] >= 0);
    assert_int_equal(len, sizeof(a)); /* the caller's address is filled in as usual */
    assert_int_equal(ntohs(a.sin_port), peer_port(s[0]));
    s[1] = accept4(lfd, NULL, NULL, ACCEPT_FLAGS);
    assert_true(s[1] >= 0);
    /* the next call refuses both others and reports the listener empty */
    errno = 0;
    assert_int_equal(accept4(lfd, NULL, NULL, ACCEPT_FLAGS), -1);
    assert_int_equal(errno, EAGAIN);

    struct sr_conn_stats st = stats();
    assert_int_equal(st.live, 2);
    assert_int_equal(st.accepted, 2);
    assert_int_equal(st.refused, 2);
    assert_int_equal(st.closed, 0);
    /* the two admitted clients are still connected, the two others are closed */
    for (int i = 0; i < 4; i++) {
        bool admitted = local_port(c[i]) == peer_port(s[0]) || local_port(c[i]) == peer_port(s[1]);
        if (admitted) {
            assert_true(still_open(c[i]));
            still++;
        } else {
            assert_true(closed_by_server(c[i]));
        }
    }
    assert_int_equal(still, 2);

    sr_conn_limit_shutdown();
    assert_int_equal(stats().live, 0); /* shutdown drops its watches */
    for (int i = 0; i < 4; i++) close(c[i]);
    close(s[0]);
    close(s[1]);
    close(lfd);
}

static void a_close_from_either_side_frees_a_slot(void **state)
{
    int port, lfd = listen_loopback(&port), c[3], s[2], late, extra;
    (void)state;
    assert_int_equal(sr_conn_limit_init(2), 0);
    sr_conn_limit_set_port(port);
    c[0] = connect_client(port);
    c[1] = connect_client(port);
    assert_int_equal(accept_all(lfd, s, 2), 2);
    assert_int_equal(local_port(c[0]), peer_port(s[0]));
    c[2] = connect_client(port);
    assert_int_equal(accept_all(lfd, &extra, 1), 0); /* full */
    assert_true(closed_by_server(c[2]));

    /* the client goes away */
    close(c[0]);
    assert_true(live_becomes(1));
    close(s[0]);

    /* the server closes the way gRPC does; the dup must not keep it open */
    shutdown(s[1], SHUT_RDWR);
    close(s[1]);
    assert_true(live_becomes(0));
    assert_true(closed_by_server(c[1]));

    late = connect_client(port);
    assert_int_equal(accept_all(lfd, s, 2), 1);
    assert_true(still_open(late));
    struct sr_conn_stats st = stats();
    assert_int_equal(st.live, 1);
    assert_int_equal(st.accepted, 3);
    assert_int_equal(st.refused, 1);
    assert_int_equal(st.closed, 2);

    sr_conn_limit_shutdown();
    close(s[0]);
    close(late);
    close(c[1]);
    close(c[2]);
    close(lfd);
}

static void a_reset_from_the_client_frees_a_slot(void **state)
{
    int port, lfd = listen_loopback(&port), c, s;
    struct linger rst = {.l_onoff = 1, .l_linger = 0};
    (void)state;
    assert_int_equal(sr_conn_limit_init(1), 0);
    sr_conn_limit_set_port(port);
    c = connect_client(port);
    assert_int_equal(accept_all(lfd, &s, 1), 1);
    assert_int_equal(setsockopt(c, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst)), 0);
    close(c); /* RST, no FIN */
    assert_true(live_becomes(0));
    assert_int_equal(stats().closed, 1);
    sr_conn_limit_shutdown();
    close(s);
    close(lfd);
}

/* gRPC drops a connection under memory pressure with a bare close(2): the
 * dup would hold it open, so the monitor's sweep must notice the fd is gone. */
static void a_close_without_shutdown_is_found_by_the_sweep(void **state)
{
    int port, lfd = listen_loopback(&port), c, s, c2;
    (void)state;
    assert_int_equal(sr_conn_limit_init(1), 0);
    sr_conn_limit_set_port(port);
    c = connect_client(port);
    assert_int_equal(accept_all(lfd, &s, 1), 1);
    close(s);
    assert_true(live_becomes(0));
    assert_true(closed_by_server(c)); /* the dup is gone too */

    c2 = connect_client(port);
    assert_int_equal(accept_all(lfd, &s, 1), 1);
    assert_int_equal(stats().accepted, 2);
    assert_int_equal(stats().refused, 0);

    sr_conn_limit_shutdown();
    close(s);
    close(c);
    close(c2);
    close(lfd);
}

static void other_listeners_are_never_limited(void **state)
{
    int port, other_port, lfd = listen_loopback(&port), ofd = listen_loopback(&other_port);
    int c[5], s[3];
    (void)state;
    assert_int_equal(sr_conn_limit_init(1), 0);
    sr_conn_limit_set_port(port);
    for (int i = 0; i < 3; i++) c[i] = connect_client(other_port);
    assert_int_equal(accept_all(ofd, s, 3), 3);
    for (int i = 0; i < 3; i++) assert_true(still_open(c[i]));
    assert_int_equal(stats().accepted, 0);
    assert_int_equal(stats().refused, 0);
    for (int i = 0; i < 3; i++) close(s[i]);

    /* and the limited one still is */
    c[3] = connect_client(port);
    c[4] = connect_client(port);
    assert_int_equal(accept_all(lfd, s, 3), 1);
    assert_int_equal(stats().accepted, 1);
    assert_int_equal(stats().refused, 1);

    sr_conn_limit_shutdown();
    close(s[0]);
    for (int i = 0; i < 5; i++) close(c[i]);
    close(ofd);
    close(lfd);
}

static void without_init_accept4_passes_everything_through(void **state)
{
    int port, lfd = listen_loopback(&port), c[3], s[3];
    struct sr_conn_stats before = stats(), after;
    (void)state;
    sr_conn_limit_set_port(port); /* a port alone does not limit */
    for (int i = 0; i < 3; i++) c[i] = connect_client(port);
    assert_int_equal(accept_all(lfd, s, 3), 3);
    after = stats();
    assert_memory_equal(&before, &after, sizeof(before));
    sr_conn_limit_set_port(0);
    for (int i = 0; i < 3; i++) {
        close(s[i]);
        close(c[i]);
    }
    close(lfd);
}

/* Out of fds, gRPC 1.51 would give the listener up on EMFILE: the pending
 * connections are refused through the spare fd instead, and EAGAIN returned. */
static void out_of_fds_refuses_pending_and_keeps_the_listener(void **state)
{
    int port, lfd = listen_loopback(&port), c[3], s[2], lowest;
    struct rlimit saved, low;
    (void)state;
    assert_int_equal(sr_conn_limit_init(10), 0);
    sr_conn_limit_set_port(port);
    c[0] = connect_client(port);
    c[1] = connect_client(port);

    lowest = open("/dev/null", O_RDONLY); /* the next fd number: none past the limit */
    assert_true(lowest >= 0);
    close(lowest);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
    low = saved;
    low.rlim_cur = (rlim_t)lowest;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    errno = 0;
    int r = accept4(lfd, NULL, NULL, ACCEPT_FLAGS);
    int e = errno;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
    assert_int_equal(r, -1);
    assert_int_equal(e, EAGAIN);
    assert_int_equal(stats().refused, 2);
    assert_int_equal(stats().live, 0);
    assert_true(closed_by_server(c[0]));
    assert_true(closed_by_server(c[1]));

    c[2] = connect_client(port);
    assert_int_equal(accept_all(lfd, s, 2), 1);
    assert_int_equal(stats().accepted, 1);

    sr_conn_limit_shutdown();
    close(s[0]);
    for (int i = 0; i < 3; i++) close(c[i]);
    close(lfd);
}

struct racer {
    int lfd, n;
    int fds[64];
};

static void *race_accept(void *arg)
{
    struct racer *r = arg;
    for (;;) {
        int fd = accept4(r->lfd, NULL, NULL, ACCEPT_FLAGS);
        if (fd < 0) break;
        r->fds[r->n++] = fd;
    }
    return NULL;
}

static void concurrent_accepts_never_exceed_the_limit(void **state)
{
    int port, lfd = listen_loopback(&port), c[64], total = 0;
    struct racer r[4];
    pthread_t t[4];
    (void)state;
    assert_int_equal(sr_conn_limit_init(10), 0);
    sr_conn_limit_set_port(port);
    for (int i = 0; i < 64; i++) c[i] = connect_client(port);
    for (int i = 0; i < 4; i++) {
        r[i] = (struct racer){.lfd = lfd};
        assert_int_equal(pthread_create(&t[i], NULL, race_accept, &r[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        total += r[i].n;
    }
    assert_int_equal(total, 10);
    assert_int_equal(stats().live, 10);
    assert_int_equal(stats().accepted, 10);
    assert_int_equal(stats().refused, 54);

    sr_conn_limit_shutdown();
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < r[i].n; k++) close(r[i].fds[k]);
    for (int i = 0; i < 64; i++) close(c[i]);
    close(lfd);
}

/* A failed assertion leaves the test early: stop the module for the next one. */
static int stop_module(void **state)
{
    (void)state;
    sr_conn_limit_shutdown();
    return 0;
}

#define TEST(f) cmocka_unit_test_teardown(f, stop_module)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(limit_admits_max_and_refuses_the_rest_leaving_no_backlog),
        TEST(a_close_from_either_side_frees_a_slot),
        TEST(a_reset_from_the_client_frees_a_slot),
        TEST(a_close_without_shutdown_is_found_by_the_sweep),
        TEST(other_listeners_are_never_limited),
        TEST(without_init_accept4_passes_everything_through),
        TEST(out_of_fds_refuses_pending_and_keeps_the_listener),
        TEST(concurrent_accepts_never_exceed_the_limit),
    };
    sr_log_level = SR_LOG_ERROR; /* the refusals are expected here */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
