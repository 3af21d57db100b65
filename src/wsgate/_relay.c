/*
 * wsgate._relay: the plain tunnel's byte relay, in C, on a thread of its own.
 *
 * Why: after a 101, a plain tunnel only copies bytes between two sockets. On uvloop every
 * chunk costs a Python call (a bytes object, data_received, transport.write), which puts
 * wsgate's CPU per small message above nginx's (docs/performance.md). Here one thread per
 * worker process runs its own epoll loop over the tunnels' sockets and never touches
 * Python objects; the event loop hears from it only when tunnels end.
 *
 * Theory of operation:
 *
 * - Python hands over a pair of connected non-blocking sockets (Relay.add; they are
 *   duplicated here, so the caller then drops its transports) with the bytes still to
 *   write to each side. Commands go through a locked list and an eventfd that wakes the
 *   thread.
 * - Per chunk: one recv() from a side into the thread's buffer, one send() to the other.
 *   What the destination does not take is kept (at most one read, READ_SIZE bytes, per
 *   direction) and the source is not read until it is written: back-pressure both ways.
 * - Any EOF or error closes the tunnel (no half-close). Bytes already kept are still
 *   written, for at most `grace` seconds; then both sockets are closed. A side whose
 *   send timeout fired gets nothing more: its socket is closed at once.
 * - Timeouts, checked by a sweep at the earliest deadline (at most every SWEEP_MIN ms):
 *   the read timeout is idle time in both directions (the time of a batch of events is
 *   read once per epoll_wait); a side's send timeout runs while bytes wait for it and
 *   restarts whenever a write makes progress.
 * - Ended tunnels are reported as records (id, event, bytes each way, reason, errno) that
 *   Relay.take() returns; the thread signals a second eventfd once per batch. The thread
 *   never closes a tunnel's sockets: the last record hands them back, and Python closes
 *   them after writing the access-log line, so a peer that sees the close finds the
 *   tunnel logged and gone (as with the Python relay).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define READ_SIZE (64 * 1024) /* one read; also what is kept per direction at most */
#define MAX_EVENTS 256
#define SWEEP_MIN 10 /* ms between two timeout sweeps, at least */
#define NEVER INT64_MAX

/* Why a tunnel ended (the `reason` of a record). */
enum {
    R_EOF_CLIENT = 1,
    R_EOF_UPSTREAM,
    R_ERROR_CLIENT,
    R_ERROR_UPSTREAM,
    R_IDLE,
    R_SEND_CLIENT,
    R_SEND_UPSTREAM,
    R_ABORTED,
};

/* Record events: the tunnel closed (log it), its sockets are gone, or both at once. */
enum { E_CLOSED = 1, E_GONE = 2 };

enum { T_OPEN, T_CLOSING, T_DEAD };

struct tunnel;

typedef struct side {
    int fd;          /* closed by Python, after the tunnel's last record */
    int live;        /* registered with epoll: reading or writing */
    int idx;         /* 0 client, 1 upstream */
    uint32_t mask;   /* events registered with epoll */
    struct tunnel *t;
    char *buf;       /* bytes waiting to be written to this side */
    size_t off, len;
    uint64_t nbytes; /* bytes read from this side */
    int64_t progress;     /* ms: when a pending write last moved (or began) */
    int64_t send_timeout; /* ms, 0: none */
} side;

typedef struct tunnel {
    side s[2];
    uint64_t id;
    int64_t last;         /* ms: the batch that last read bytes */
    int64_t read_timeout; /* ms, 0: none */
    int64_t grace;        /* ms a closing tunnel may spend writing what it kept */
    int64_t deadline;     /* closing: when what is left is dropped */
    int state;
    int reason, err;
    struct tunnel *prev, *next;
} tunnel;

enum { C_ADD, C_ABORT, C_ABORT_ALL, C_STOP };

typedef struct cmd {
    int kind;
    uint64_t id;
    tunnel *t;
    struct cmd *next;
} cmd;

typedef struct rec {
    uint64_t id, client, upstream;
    int event, reason, err;
    int fds[2]; /* with E_GONE: the sockets, for Python to close; else -1 */
} rec;

typedef struct {
    PyObject_HEAD
    int ep;          /* the thread's epoll */
    int wake;        /* eventfd: commands are waiting */
    int notify;      /* eventfd: records are waiting (the event loop reads it) */
    pthread_t thread;
    int running;     /* the thread was started and not joined */
    pthread_mutex_t lock;
    pthread_cond_t done_cond;
    cmd *head, *tail;         /* commands, under lock */
    uint64_t seq, done_seq;   /* commands pushed / processed, under lock */
    rec *recs;                /* records, under lock */
    size_t nrecs, caprecs;
    int thread_alive;         /* under lock */
    /* owned by the thread */
    tunnel *live;
    tunnel *dead;
    int64_t now, next_sweep, last_sweep;
    char *rbuf;
    size_t batch_recs;
    /* read by Python without the lock */
    uint64_t buffered, peak, ntunnels, added;
} Relay;

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Counters Python reads while the thread runs (only the thread writes them). */
static void
stat_add(uint64_t *p, int64_t delta)
{
    __atomic_fetch_add(p, (uint64_t)delta, __ATOMIC_RELAXED);
}

static void
note_peak(Relay *r)
{
    uint64_t now = __atomic_load_n(&r->buffered, __ATOMIC_RELAXED);
    if (now > r->peak)
        __atomic_store_n(&r->peak, now, __ATOMIC_RELAXED);
}

static void
at_least_by(Relay *r, int64_t when)
{
    if (when < r->next_sweep)
        r->next_sweep = when;
}

static void
set_mask(Relay *r, side *s, uint32_t mask)
{
    if (!s->live || mask == s->mask)
        return;
    struct epoll_event ev;
    ev.events = mask;
    ev.data.ptr = s;
    epoll_ctl(r->ep, EPOLL_CTL_MOD, s->fd, &ev);
    s->mask = mask;
}

static void
push_rec(Relay *r, tunnel *t, int event)
{
    rec x;
    x.id = t->id;
    x.client = t->s[0].nbytes;
    x.upstream = t->s[1].nbytes;
    x.event = event;
    x.reason = t->reason;
    x.err = t->err;
    x.fds[0] = event & E_GONE ? t->s[0].fd : -1;
    x.fds[1] = event & E_GONE ? t->s[1].fd : -1;
    pthread_mutex_lock(&r->lock);
    if (r->nrecs == r->caprecs) {
        size_t cap = r->caprecs ? r->caprecs * 2 : 64;
        rec *n = realloc(r->recs, cap * sizeof(rec));
        if (n == NULL) { /* cannot happen in practice; the record would be lost */
            pthread_mutex_unlock(&r->lock);
            return;
        }
        r->recs = n;
        r->caprecs = cap;
    }
    r->recs[r->nrecs++] = x;
    pthread_mutex_unlock(&r->lock);
    r->batch_recs++;
}

static void
drop_pending(Relay *r, side *s)
{
    if (s->buf != NULL) {
        stat_add(&r->buffered, -(int64_t)s->len);
        free(s->buf);
        s->buf = NULL;
    }
    s->off = s->len = 0;
}

/* Stop relaying on a side (its socket is closed by Python with the last record). */
static void
close_side(Relay *r, side *s)
{
    drop_pending(r, s);
    if (!s->live)
        return;
    epoll_ctl(r->ep, EPOLL_CTL_DEL, s->fd, NULL);
    s->live = 0;
    s->mask = 0;
}

/* Both sockets are closed: unlink, report, free after the batch. */
static void
bury(Relay *r, tunnel *t, int closed_now)
{
    t->state = T_DEAD;
    if (t->prev)
        t->prev->next = t->next;
    else
        r->live = t->next;
    if (t->next)
        t->next->prev = t->prev;
    t->prev = NULL;
    t->next = r->dead;
    r->dead = t;
    stat_add(&r->ntunnels, -1);
    push_rec(r, t, closed_now ? (E_CLOSED | E_GONE) : E_GONE);
}

/* End an open tunnel: stop reading, write what is kept (bounded by grace), report. */
static void
finish(Relay *r, tunnel *t, int reason, int err)
{
    if (t->state != T_OPEN)
        return;
    t->state = T_CLOSING;
    t->reason = reason;
    t->err = err;
    for (int i = 0; i < 2; i++) {
        side *s = &t->s[i];
        if (s->len == 0)
            close_side(r, s);
        else
            set_mask(r, s, EPOLLOUT);
    }
    if (!t->s[0].live && !t->s[1].live) {
        bury(r, t, 1);
        return;
    }
    push_rec(r, t, E_CLOSED);
    t->deadline = r->now + t->grace;
    at_least_by(r, t->deadline);
}

static void
abort_tunnel(Relay *r, tunnel *t)
{
    if (t->state == T_DEAD)
        return;
    int was_open = t->state == T_OPEN;
    if (was_open) {
        t->reason = R_ABORTED;
        t->err = 0;
    }
    close_side(r, &t->s[0]);
    close_side(r, &t->s[1]);
    bury(r, t, was_open);
}

static void
side_done_writing(Relay *r, side *s)
{
    tunnel *t = s->t;
    drop_pending(r, s);
    if (t->state == T_OPEN) {
        set_mask(r, s, s->mask & ~EPOLLOUT);
        side *src = &t->s[1 - s->idx];
        set_mask(r, src, src->mask | EPOLLIN);
    } else {
        close_side(r, s);
        if (!t->s[0].live && !t->s[1].live)
            bury(r, t, 0);
    }
}

/* A write error on side s (EPIPE, ECONNRESET...). */
static void
write_failed(Relay *r, side *s, int err)
{
    tunnel *t = s->t;
    if (t->state == T_OPEN) {
        finish(r, t, s->idx ? R_ERROR_UPSTREAM : R_ERROR_CLIENT, err);
    } else {
        close_side(r, s);
        if (!t->s[0].live && !t->s[1].live)
            bury(r, t, 0);
    }
}

static void
on_writable(Relay *r, side *s)
{
    while (s->len > 0) {
        ssize_t w = send(s->fd, s->buf + s->off, s->len, MSG_NOSIGNAL);
        if (w > 0) {
            s->off += (size_t)w;
            s->len -= (size_t)w;
            stat_add(&r->buffered, -(int64_t)w);
            s->progress = r->now;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        write_failed(r, s, w < 0 ? errno : EPIPE);
        return;
    }
    side_done_writing(r, s);
}

/* Keep what the destination did not take; stop reading the source until it is written. */
static int
keep(Relay *r, side *src, side *dst, const char *data, size_t n)
{
    dst->buf = malloc(n);
    if (dst->buf == NULL) {
        finish(r, dst->t, dst->idx ? R_ERROR_UPSTREAM : R_ERROR_CLIENT, ENOMEM);
        return -1;
    }
    memcpy(dst->buf, data, n);
    dst->off = 0;
    dst->len = n;
    dst->progress = r->now;
    stat_add(&r->buffered, (int64_t)n);
    note_peak(r);
    if (src != NULL)
        set_mask(r, src, src->mask & ~EPOLLIN);
    set_mask(r, dst, dst->mask | EPOLLOUT);
    if (dst->send_timeout > 0)
        at_least_by(r, r->now + dst->send_timeout);
    return 0;
}

/* The per-chunk path. */
static void
on_readable(Relay *r, side *src, int hup)
{
    tunnel *t = src->t;
    side *dst = &t->s[1 - src->idx];
    ssize_t n;
    do {
        n = recv(src->fd, r->rbuf, READ_SIZE, 0);
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
        src->nbytes += (uint64_t)n;
        t->last = r->now;
        ssize_t w;
        do {
            w = send(dst->fd, r->rbuf, (size_t)n, MSG_NOSIGNAL);
        } while (w < 0 && errno == EINTR);
        if (w == n)
            return;
        if (w < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                finish(r, t, dst->idx ? R_ERROR_UPSTREAM : R_ERROR_CLIENT, errno);
                return;
            }
            w = 0;
        }
        keep(r, src, dst, r->rbuf + w, (size_t)(n - w));
        return;
    }
    if (n == 0) {
        finish(r, t, src->idx ? R_EOF_UPSTREAM : R_EOF_CLIENT, 0);
        return;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (hup) { /* nothing to read and the socket is dead */
            int err = 0;
            socklen_t len = sizeof(err);
            getsockopt(src->fd, SOL_SOCKET, SO_ERROR, &err, &len);
            finish(r, t, err ? (src->idx ? R_ERROR_UPSTREAM : R_ERROR_CLIENT)
                             : (src->idx ? R_EOF_UPSTREAM : R_EOF_CLIENT), err);
        }
        return;
    }
    finish(r, t, src->idx ? R_ERROR_UPSTREAM : R_ERROR_CLIENT, errno);
}

static void
on_event(Relay *r, side *s, uint32_t ev)
{
    tunnel *t = s->t;
    if (t->state == T_DEAD || !s->live)
        return;
    int hup = (ev & (EPOLLERR | EPOLLHUP)) != 0;
    if (s->len > 0 && (ev & EPOLLOUT || hup)) {
        on_writable(r, s);
        if (t->state == T_DEAD || !s->live)
            return;
    }
    if (t->state != T_OPEN)
        return;
    if (s->mask & EPOLLIN) {
        if (ev & EPOLLIN || hup)
            on_readable(r, s, hup);
        return;
    }
    if (hup && s->len == 0) {
        /* A dead socket that is neither read (back-pressure) nor written. */
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        finish(r, t, err ? (s->idx ? R_ERROR_UPSTREAM : R_ERROR_CLIENT)
                         : (s->idx ? R_EOF_UPSTREAM : R_EOF_CLIENT), err);
    }
}

static void
sweep(Relay *r)
{
    int64_t now = r->now, next = NEVER;
    tunnel *t = r->live, *following;
    for (; t != NULL; t = following) {
        following = t->next;
        if (t->state == T_OPEN) {
            if (t->read_timeout > 0) {
                if (now - t->last >= t->read_timeout) {
                    finish(r, t, R_IDLE, 0);
                    goto closing;
                }
                if (t->last + t->read_timeout < next)
                    next = t->last + t->read_timeout;
            }
            for (int i = 0; i < 2; i++) {
                side *s = &t->s[i];
                if (s->len == 0 || s->send_timeout <= 0)
                    continue;
                if (now - s->progress >= s->send_timeout) {
                    /* This side does not read: what it was to get is dropped and its
                     * socket closed now, as nginx does (the other side is still
                     * flushed). */
                    drop_pending(r, s);
                    finish(r, t, i ? R_SEND_UPSTREAM : R_SEND_CLIENT, 0);
                    goto closing;
                }
                if (s->progress + s->send_timeout < next)
                    next = s->progress + s->send_timeout;
            }
            continue;
        }
    closing:
        if (t->state == T_CLOSING) {
            if (now >= t->deadline) {
                close_side(r, &t->s[0]);
                close_side(r, &t->s[1]);
                bury(r, t, 0);
            } else if (t->deadline < next) {
                next = t->deadline;
            }
        }
    }
    r->last_sweep = now;
    r->next_sweep = next;
}

static void
start_tunnel(Relay *r, tunnel *t)
{
    t->last = r->now;
    t->state = T_OPEN;
    stat_add(&r->ntunnels, 1);
    stat_add(&r->added, 1);
    stat_add(&r->buffered, (int64_t)(t->s[0].len + t->s[1].len));
    note_peak(r);
    t->next = r->live;
    if (r->live)
        r->live->prev = t;
    r->live = t;
    for (int i = 0; i < 2; i++) {
        side *s = &t->s[i];
        side *other = &t->s[1 - i];
        s->progress = r->now;
        uint32_t mask = (other->len ? 0 : EPOLLIN) | (s->len ? EPOLLOUT : 0);
        struct epoll_event ev;
        ev.events = mask;
        ev.data.ptr = s;
        if (epoll_ctl(r->ep, EPOLL_CTL_ADD, s->fd, &ev) < 0) {
            int err = errno;
            s->mask = 0;
            /* unregistered: close_side's EPOLL_CTL_DEL fails harmlessly */
            finish(r, t, i ? R_ERROR_UPSTREAM : R_ERROR_CLIENT, err);
            return;
        }
        s->mask = mask;
        s->live = 1;
        if (s->len && s->send_timeout > 0)
            at_least_by(r, r->now + s->send_timeout);
    }
    if (t->read_timeout > 0)
        at_least_by(r, t->last + t->read_timeout);
}

/* Run the commands pushed since the last look; returns 1 on C_STOP. */
static int
run_commands(Relay *r)
{
    uint64_t counter;
    if (read(r->wake, &counter, sizeof(counter)) < 0) {
        /* EAGAIN: a previous pass took the commands already */
    }
    pthread_mutex_lock(&r->lock);
    cmd *c = r->head;
    r->head = r->tail = NULL;
    uint64_t seq = r->seq;
    pthread_mutex_unlock(&r->lock);
    int stop = 0;
    while (c != NULL) {
        cmd *following = c->next;
        if (c->kind == C_ADD) {
            start_tunnel(r, c->t);
        } else if (c->kind == C_ABORT) {
            for (tunnel *t = r->live; t != NULL; t = t->next) {
                if (t->id == c->id) {
                    abort_tunnel(r, t);
                    break;
                }
            }
        } else if (c->kind == C_ABORT_ALL || c->kind == C_STOP) {
            while (r->live != NULL)
                abort_tunnel(r, r->live);
            if (c->kind == C_STOP)
                stop = 1;
        }
        free(c);
        c = following;
    }
    pthread_mutex_lock(&r->lock);
    r->done_seq = seq;
    pthread_cond_broadcast(&r->done_cond);
    pthread_mutex_unlock(&r->lock);
    return stop;
}

static void
free_dead(Relay *r)
{
    while (r->dead != NULL) {
        tunnel *t = r->dead;
        r->dead = t->next;
        free(t);
    }
}

static void
signal_records(Relay *r)
{
    if (r->batch_recs) {
        uint64_t one = 1;
        if (write(r->notify, &one, sizeof(one)) < 0) {
            /* EAGAIN: the counter is already non-zero, the loop will look */
        }
        r->batch_recs = 0;
    }
}

static void *
relay_main(void *arg)
{
    Relay *r = arg;
    struct epoll_event events[MAX_EVENTS];
    int stop = 0;
    r->now = now_ms();
    while (!stop) {
        int timeout = -1;
        if (r->next_sweep != NEVER) {
            int64_t at = r->next_sweep;
            if (at < r->last_sweep + SWEEP_MIN)
                at = r->last_sweep + SWEEP_MIN;
            int64_t wait = at - r->now;
            timeout = wait <= 0 ? 0 : (wait > 60000 ? 60000 : (int)wait);
        }
        int n = epoll_wait(r->ep, events, MAX_EVENTS, timeout);
        r->now = now_ms();
        if (n < 0)
            n = 0; /* EINTR */
        for (int i = 0; i < n; i++) {
            if (events[i].data.ptr == NULL)
                stop |= run_commands(r);
            else
                on_event(r, events[i].data.ptr, events[i].events);
        }
        if (r->next_sweep != NEVER && r->now >= r->next_sweep &&
            r->now >= r->last_sweep + SWEEP_MIN)
            sweep(r);
        free_dead(r);
        signal_records(r);
    }
    pthread_mutex_lock(&r->lock);
    r->thread_alive = 0;
    pthread_cond_broadcast(&r->done_cond);
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

/* -- Python side ---------------------------------------------------------------------- */

static void
close_rec_fds(rec *x)
{
    for (int i = 0; i < 2; i++)
        if (x->fds[i] >= 0)
            close(x->fds[i]);
}

static int
push_cmd(Relay *r, int kind, uint64_t id, tunnel *t)
{
    cmd *c = malloc(sizeof(cmd));
    if (c == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    c->kind = kind;
    c->id = id;
    c->t = t;
    c->next = NULL;
    pthread_mutex_lock(&r->lock);
    if (r->tail)
        r->tail->next = c;
    else
        r->head = c;
    r->tail = c;
    r->seq++;
    pthread_mutex_unlock(&r->lock);
    uint64_t one = 1;
    if (write(r->wake, &one, sizeof(one)) < 0) {
        /* EAGAIN: the thread has been woken already */
    }
    return 0;
}

/* Wait (without the GIL) until the thread has run every command pushed so far. */
static void
wait_commands(Relay *r)
{
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&r->lock);
    uint64_t target = r->seq;
    while (r->thread_alive && r->done_seq < target)
        pthread_cond_wait(&r->done_cond, &r->lock);
    pthread_mutex_unlock(&r->lock);
    Py_END_ALLOW_THREADS
}

static void
free_cmds(Relay *r)
{
    cmd *c = r->head;
    while (c != NULL) {
        cmd *following = c->next;
        if (c->kind == C_ADD) {
            close(c->t->s[0].fd);
            close(c->t->s[1].fd);
            free(c->t->s[0].buf);
            free(c->t->s[1].buf);
            free(c->t);
        }
        free(c);
        c = following;
    }
    r->head = r->tail = NULL;
}

static void
stop_thread(Relay *r)
{
    if (!r->running)
        return;
    if (push_cmd(r, C_STOP, 0, NULL) < 0) {
        PyErr_Clear();
        return;
    }
    Py_BEGIN_ALLOW_THREADS
    pthread_join(r->thread, NULL);
    Py_END_ALLOW_THREADS
    r->running = 0;
    free_cmds(r);
    free_dead(r);
}

static void
Relay_dealloc(Relay *r)
{
    stop_thread(r);
    if (r->ep >= 0)
        close(r->ep);
    if (r->wake >= 0)
        close(r->wake);
    if (r->notify >= 0)
        close(r->notify);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->done_cond);
    for (size_t i = 0; i < r->nrecs; i++) /* records nobody took: their sockets */
        close_rec_fds(&r->recs[i]);
    free(r->recs);
    free(r->rbuf);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static PyObject *
Relay_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, ":Relay", kwlist))
        return NULL;
    Relay *r = (Relay *)type->tp_alloc(type, 0);
    if (r == NULL)
        return NULL;
    r->ep = r->wake = r->notify = -1;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->done_cond, NULL);
    r->next_sweep = NEVER;
    r->last_sweep = 0;
    r->rbuf = malloc(READ_SIZE);
    if (r->rbuf == NULL) {
        Py_DECREF(r);
        return PyErr_NoMemory();
    }
    r->ep = epoll_create1(EPOLL_CLOEXEC);
    r->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    r->notify = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->ep < 0 || r->wake < 0 || r->notify < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(r);
        return NULL;
    }
    struct epoll_event ev;
    ev.events = EPOLLIN;
    ev.data.ptr = NULL;
    if (epoll_ctl(r->ep, EPOLL_CTL_ADD, r->wake, &ev) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(r);
        return NULL;
    }
    /* The thread takes no signals: they stay with the event loop's thread. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    r->thread_alive = 1;
    int rc = pthread_create(&r->thread, NULL, relay_main, r);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        r->thread_alive = 0;
        errno = rc;
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(r);
        return NULL;
    }
    r->running = 1;
    return (PyObject *)r;
}

static int64_t
to_ms(double seconds)
{
    if (!(seconds > 0))
        return 0;
    if (seconds > 1e12)
        seconds = 1e12;
    int64_t ms = (int64_t)(seconds * 1000.0 + 0.5);
    return ms > 0 ? ms : 1;
}

static PyObject *
Relay_add(Relay *r, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"id", "client_fd", "upstream_fd", "to_client", "to_upstream",
                             "read_timeout", "client_send_timeout", "upstream_send_timeout",
                             "grace", NULL};
    unsigned long long id;
    int cfd, ufd;
    Py_buffer to_client, to_upstream;
    double read_timeout, client_send, upstream_send, grace;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "Kiiy*y*dddd:add", kwlist, &id, &cfd, &ufd,
                                     &to_client, &to_upstream, &read_timeout, &client_send,
                                     &upstream_send, &grace))
        return NULL;
    PyObject *result = NULL;
    tunnel *t = NULL;
    int fds[2] = {-1, -1};
    if (!r->running) {
        PyErr_SetString(PyExc_RuntimeError, "the relay is stopped");
        goto done;
    }
    t = calloc(1, sizeof(tunnel));
    if (t == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    int given[2] = {cfd, ufd};
    for (int i = 0; i < 2; i++) {
        fds[i] = fcntl(given[i], F_DUPFD_CLOEXEC, 0);
        if (fds[i] < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            goto done;
        }
        int flags = fcntl(fds[i], F_GETFL);
        if (flags < 0 || fcntl(fds[i], F_SETFL, flags | O_NONBLOCK) < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            goto done;
        }
    }
    Py_buffer *early[2] = {&to_client, &to_upstream};
    for (int i = 0; i < 2; i++) {
        side *s = &t->s[i];
        s->idx = i;
        s->t = t;
        s->fd = fds[i];
        if (early[i]->len > 0) {
            s->buf = malloc((size_t)early[i]->len);
            if (s->buf == NULL) {
                PyErr_NoMemory();
                goto done;
            }
            memcpy(s->buf, early[i]->buf, (size_t)early[i]->len);
            s->len = (size_t)early[i]->len;
        }
    }
    t->id = id;
    t->read_timeout = to_ms(read_timeout);
    t->s[0].send_timeout = to_ms(client_send);
    t->s[1].send_timeout = to_ms(upstream_send);
    t->grace = to_ms(grace);
    if (push_cmd(r, C_ADD, id, t) < 0)
        goto done;
    t = NULL;
    fds[0] = fds[1] = -1;
    result = Py_None;
    Py_INCREF(result);
done:
    if (t != NULL) {
        free(t->s[0].buf);
        free(t->s[1].buf);
        free(t);
    }
    for (int i = 0; i < 2; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    PyBuffer_Release(&to_client);
    PyBuffer_Release(&to_upstream);
    return result;
}

static PyObject *
Relay_abort(Relay *r, PyObject *arg)
{
    unsigned long long id = PyLong_AsUnsignedLongLong(arg);
    if (id == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    if (r->running) {
        if (push_cmd(r, C_ABORT, id, NULL) < 0)
            return NULL;
        wait_commands(r);
    }
    Py_RETURN_NONE;
}

static PyObject *
Relay_abort_all(Relay *r, PyObject *Py_UNUSED(ignored))
{
    if (r->running) {
        if (push_cmd(r, C_ABORT_ALL, 0, NULL) < 0)
            return NULL;
        wait_commands(r);
    }
    Py_RETURN_NONE;
}

static PyObject *
Relay_stop(Relay *r, PyObject *Py_UNUSED(ignored))
{
    stop_thread(r);
    Py_RETURN_NONE;
}

static PyObject *
Relay_take(Relay *r, PyObject *Py_UNUSED(ignored))
{
    uint64_t counter;
    if (read(r->notify, &counter, sizeof(counter)) < 0) {
        /* EAGAIN: nothing signalled (a synchronous abort, or an earlier take) */
    }
    pthread_mutex_lock(&r->lock);
    rec *recs = r->recs;
    size_t n = r->nrecs;
    r->recs = NULL;
    r->nrecs = r->caprecs = 0;
    pthread_mutex_unlock(&r->lock);
    PyObject *list = PyList_New((Py_ssize_t)n);
    if (list == NULL) {
        free(recs);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        rec *x = &recs[i];
        PyObject *item = Py_BuildValue("(KiKKiiii)", (unsigned long long)x->id, x->event,
                                       (unsigned long long)x->client,
                                       (unsigned long long)x->upstream, x->reason, x->err,
                                       x->fds[0], x->fds[1]);
        if (item == NULL) {
            Py_DECREF(list);
            for (size_t j = i; j < n; j++)
                close_rec_fds(&recs[j]);
            free(recs);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, item);
    }
    free(recs);
    return list;
}

static PyObject *
Relay_fileno(Relay *r, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLong(r->notify);
}

static PyObject *
Relay_get_counter(Relay *r, void *which)
{
    uint64_t *p = (uint64_t *)((char *)r + (size_t)which);
    return PyLong_FromUnsignedLongLong(__atomic_load_n(p, __ATOMIC_RELAXED));
}

static PyObject *
Relay_get_running(Relay *r, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(r->running);
}

static PyMethodDef Relay_methods[] = {
    {"add", (PyCFunction)(void (*)(void))Relay_add, METH_VARARGS | METH_KEYWORDS,
     "Take over a tunnel: duplicate both sockets, write the early bytes, relay."},
    {"abort", (PyCFunction)Relay_abort, METH_O,
     "Close one tunnel's sockets now, without flushing; returns once done."},
    {"abort_all", (PyCFunction)Relay_abort_all, METH_NOARGS,
     "Close every tunnel's sockets now, without flushing; returns once done."},
    {"stop", (PyCFunction)Relay_stop, METH_NOARGS,
     "Close every tunnel and join the thread."},
    {"take", (PyCFunction)Relay_take, METH_NOARGS,
     "The records of ended tunnels: (id, event, client bytes, upstream bytes, reason, errno)."},
    {"fileno", (PyCFunction)Relay_fileno, METH_NOARGS,
     "The eventfd that becomes readable when records wait."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Relay_getset[] = {
    {"buffered", (getter)Relay_get_counter, NULL, "bytes kept for slow sides now",
     (void *)offsetof(Relay, buffered)},
    {"peak_buffered", (getter)Relay_get_counter, NULL, "the most bytes ever kept at once",
     (void *)offsetof(Relay, peak)},
    {"tunnels", (getter)Relay_get_counter, NULL, "tunnels not yet gone",
     (void *)offsetof(Relay, ntunnels)},
    {"added", (getter)Relay_get_counter, NULL, "tunnels taken over since the start",
     (void *)offsetof(Relay, added)},
    {"running", (getter)Relay_get_running, NULL, "whether the thread runs", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject RelayType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "wsgate._relay.Relay",
    .tp_basicsize = sizeof(Relay),
    .tp_dealloc = (destructor)Relay_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One relay thread with its epoll loop (one per worker process).",
    .tp_methods = Relay_methods,
    .tp_getset = Relay_getset,
    .tp_new = Relay_new,
};

static struct PyModuleDef relay_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "wsgate._relay",
    .m_doc = "The plain tunnel's byte relay on a thread of its own (see _relay.c).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__relay(void)
{
    if (PyType_Ready(&RelayType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&relay_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&RelayType);
    if (PyModule_AddObject(m, "Relay", (PyObject *)&RelayType) < 0) {
        Py_DECREF(&RelayType);
        Py_DECREF(m);
        return NULL;
    }
    struct {
        const char *name;
        long value;
    } consts[] = {
        {"EOF_CLIENT", R_EOF_CLIENT},
        {"EOF_UPSTREAM", R_EOF_UPSTREAM},
        {"ERROR_CLIENT", R_ERROR_CLIENT},
        {"ERROR_UPSTREAM", R_ERROR_UPSTREAM},
        {"IDLE", R_IDLE},
        {"SEND_CLIENT", R_SEND_CLIENT},
        {"SEND_UPSTREAM", R_SEND_UPSTREAM},
        {"ABORTED", R_ABORTED},
        {"CLOSED", E_CLOSED},
        {"GONE", E_GONE},
        {"READ_SIZE", READ_SIZE},
    };
    for (size_t i = 0; i < sizeof(consts) / sizeof(consts[0]); i++) {
        if (PyModule_AddIntConstant(m, consts[i].name, consts[i].value) < 0) {
            Py_DECREF(m);
            return NULL;
        }
    }
    return m;
}
