/* The MIDI output as a JACK client whose process callback is C: no Python, no GIL in JACK's
 * real-time thread.
 *
 * The scheduler (Python, its own thread) hands events over through a single-producer,
 * single-consumer queue of fixed-size slots: it writes a slot, then publishes the write position
 * (release); the process callback reads up to the published position (acquire) and publishes its
 * read position once the slots are copied. Every call from Python runs with the GIL held, so the
 * producer side is one thread at a time whichever Python thread calls. Each event goes out at
 * its exact frame in the cycle that contains it (offset = frame - the cycle's first frame); one
 * handed over too late for its frame goes out at offset 0 and is counted. The callback keeps
 * which notes it put out without their note-off, so a panic can end exactly those.
 *
 * JACK's frame clock is 32 bits (it wraps after 24.8 hours at 48 kHz, counted from the server's
 * start): frames here are 64-bit, unwrapped against the last cycle's first frame.
 *
 * Used from sjtui/midi/jack_out.py.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <jack/jack.h>
#include <jack/midiport.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "../_jackclient.h"

#define MAX_DUE 512     /* events taken per cycle; the rest wait for the next cycle (late, counted) */
#define MAX_PANIC 4096  /* messages one panic can send (note-offs for 16 channels x 128 notes, and more) */
#define REASON_SIZE 512

enum { PANIC_IDLE = 0, PANIC_REQUESTED = 1, PANIC_DONE = 2 };

typedef struct {
    int64_t frame;
    uint32_t size;
    uint8_t data[4];
} Event;

typedef struct {
    jack_client_t *client;
    jack_port_t *port;
    Event *queue;
    uint64_t mask; /* capacity - 1, capacity a power of two */
    uint64_t write_pos; /* Python: written, then published (release) */
    uint64_t read_pos;  /* process(): published (release) after the slots are copied */
    Event due[MAX_DUE];
    int panic_state;
    int panic_silence;
    int panic_count;
    uint8_t panic[MAX_PANIC][3];
    uint8_t panic_size[MAX_PANIC];
    uint8_t on[16 * 128]; /* note-ons out without their note-off, per (channel << 7 | note) */
    int64_t last_start; /* the last cycle's first frame, unwrapped */
    int have_start; /* written by process() only */
    int64_t sent, late, lost, dropped, max_late;
    int server_gone;
    int had_connections;
    pthread_mutex_t reason_lock; /* JACK's notification thread writes a reason, Python reads it */
    uint64_t reason_seq;
    char reason[REASON_SIZE];
    char port_name[320];
    char client_name[128];
    double sample_rate;
} Out;

static int64_t load64(int64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

static void add64(int64_t *p, int64_t v) { __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + v, __ATOMIC_RELEASE); }

/* a 32-bit frame time as a 64-bit frame near ``reference`` (within 2^31 frames: 12 hours at 48 kHz) */
static int64_t unwrap(int64_t reference, jack_nframes_t t)
{
    int32_t delta = (int32_t)(t - (jack_nframes_t)reference);
    return reference + delta;
}

static void track(Out *o, const uint8_t *data, uint32_t size)
{
    if (size != 3)
        return;
    int kind = data[0] & 0xF0;
    int key = ((data[0] & 0x0F) << 7) | (data[1] & 0x7F);
    if (kind == 0x90 && data[2] > 0) {
        if (o->on[key] < 255)
            o->on[key]++;
    } else if ((kind == 0x80 || kind == 0x90) && o->on[key]) {
        o->on[key]--;
    }
}

static void write_now(Out *o, void *buffer, const uint8_t *data, uint32_t size)
{
    if (jack_midi_event_write(buffer, 0, data, size) == 0)
        add64(&o->sent, 1);
    else
        add64(&o->lost, 1);
}

static int process(jack_nframes_t frames, void *arg)
{
    Out *o = (Out *)arg;
    void *buffer = jack_port_get_buffer(o->port, frames);
    jack_midi_clear_buffer(buffer);
    jack_nframes_t start32 = jack_last_frame_time(o->client);
    int64_t start = o->have_start ? unwrap(o->last_start, start32) : (int64_t)start32;
    __atomic_store_n(&o->last_start, start, __ATOMIC_RELEASE);
    __atomic_store_n(&o->have_start, 1, __ATOMIC_RELEASE);

    uint64_t write_pos = __atomic_load_n(&o->write_pos, __ATOMIC_ACQUIRE);
    uint64_t read_pos = o->read_pos;

    if (__atomic_load_n(&o->panic_state, __ATOMIC_ACQUIRE) == PANIC_REQUESTED) {
        __atomic_store_n(&o->read_pos, write_pos, __ATOMIC_RELEASE); /* what was queued is dropped */
        if (o->panic_silence) {
            for (int key = 0; key < 16 * 128; key++) {
                for (; o->on[key] > 0; o->on[key]--) {
                    uint8_t off[3] = {(uint8_t)(0x80 | (key >> 7)), (uint8_t)(key & 0x7F), 0};
                    write_now(o, buffer, off, 3);
                }
            }
        }
        for (int i = 0; i < o->panic_count; i++)
            write_now(o, buffer, o->panic[i], o->panic_size[i]);
        __atomic_store_n(&o->panic_state, PANIC_DONE, __ATOMIC_RELEASE);
        return 0;
    }

    int64_t end = start + (int64_t)frames;
    int n = 0;
    while (read_pos < write_pos && n < MAX_DUE) {
        const Event *e = &o->queue[read_pos & o->mask];
        if (e->frame >= end)
            break;
        o->due[n++] = *e;
        read_pos++;
    }
    __atomic_store_n(&o->read_pos, read_pos, __ATOMIC_RELEASE);
    if (n == 0)
        return 0;

    /* offsets: late ones at 0 (counted); then in time order, as JACK's MIDI buffer needs them
     * (insertion sort, stable: events of one frame keep the order they were scheduled in) */
    for (int i = 0; i < n; i++) {
        int64_t offset = o->due[i].frame - start;
        if (offset < 0) {
            add64(&o->late, 1);
            if (-offset > o->max_late)
                __atomic_store_n(&o->max_late, -offset, __ATOMIC_RELEASE);
            offset = 0;
        }
        o->due[i].frame = offset;
    }
    for (int i = 1; i < n; i++) {
        Event e = o->due[i];
        int j = i - 1;
        while (j >= 0 && o->due[j].frame > e.frame) {
            o->due[j + 1] = o->due[j];
            j--;
        }
        o->due[j + 1] = e;
    }
    for (int i = 0; i < n; i++) {
        const Event *e = &o->due[i];
        if (jack_midi_event_write(buffer, (jack_nframes_t)e->frame, e->data, e->size) == 0) {
            add64(&o->sent, 1);
            track(o, e->data, e->size);
        } else {
            add64(&o->lost, 1);
        }
    }
    return 0;
}

static void set_reason(Out *o, const char *reason)
{
    pthread_mutex_lock(&o->reason_lock);
    PyOS_snprintf(o->reason, sizeof o->reason, "%s", reason);
    o->reason_seq++;
    pthread_mutex_unlock(&o->reason_lock);
}

/* JACK's notification thread: the last connection of the port went away (the receiver quit) */
static void port_connect(jack_port_id_t a, jack_port_id_t b, int connect, void *arg)
{
    Out *o = (Out *)arg;
    jack_port_t *pa = jack_port_by_id(o->client, a), *pb = jack_port_by_id(o->client, b);
    if (pa != o->port && pb != o->port)
        return;
    if (connect) {
        __atomic_store_n(&o->had_connections, 1, __ATOMIC_RELEASE);
        set_reason(o, "");
        return;
    }
    if (jack_port_connected(o->port) == 0) {
        jack_port_t *other = pa == o->port ? pb : pa;
        char reason[REASON_SIZE];
        PyOS_snprintf(reason, sizeof reason, "JACK MIDI destination '%s' went away; %s is connected to nothing",
                      other != NULL ? jack_port_name(other) : "?", o->port_name);
        set_reason(o, reason);
    }
}

static void shutdown_callback(jack_status_t Py_UNUSED(code), const char *why, void *arg)
{
    Out *o = (Out *)arg;
    __atomic_store_n(&o->server_gone, 1, __ATOMIC_RELEASE);
    char reason[REASON_SIZE];
    PyOS_snprintf(reason, sizeof reason, "the JACK server shut down: %s", why != NULL ? why : "no reason given");
    set_reason(o, reason);
}

static const char *CAPSULE = "sjtui.midi._jackmidi.Out";

static void close_out(Out *o)
{
    if (o->client != NULL) {
        jack_client_t *client = o->client;
        o->client = NULL;
        if (!__atomic_load_n(&o->server_gone, __ATOMIC_ACQUIRE))
            jack_deactivate(client); /* returns after the last process() call */
        close_client(client);
    }
}

static void destroy(PyObject *capsule)
{
    Out *o = (Out *)PyCapsule_GetPointer(capsule, CAPSULE);
    if (o != NULL) {
        close_out(o);
        pthread_mutex_destroy(&o->reason_lock);
        PyMem_Free(o->queue);
        PyMem_Free(o);
    }
}

static Out *get(PyObject *capsule)
{
    Out *o = (Out *)PyCapsule_GetPointer(capsule, CAPSULE);
    if (o != NULL && o->client == NULL) {
        PyErr_SetString(PyExc_ValueError, "the JACK MIDI output is closed");
        return NULL;
    }
    return o;
}

/* open(client_name, port_name, server_name or None, capacity) -> handle; active when it returns */
static PyObject *py_open(PyObject *Py_UNUSED(self), PyObject *args)
{
    const char *name, *port_name, *server;
    Py_ssize_t capacity;
    if (!PyArg_ParseTuple(args, "sszn", &name, &port_name, &server, &capacity))
        return NULL;
    if (capacity < 2 || (capacity & (capacity - 1)) != 0) {
        PyErr_SetString(PyExc_ValueError, "the queue's capacity must be a power of two");
        return NULL;
    }
    Out *o = (Out *)PyMem_Calloc(1, sizeof(Out));
    Event *queue = (Event *)PyMem_Calloc((size_t)capacity, sizeof(Event));
    if (o == NULL || queue == NULL) {
        PyMem_Free(o);
        PyMem_Free(queue);
        return PyErr_NoMemory();
    }
    o->queue = queue;
    o->mask = (uint64_t)capacity - 1;
    pthread_mutex_init(&o->reason_lock, NULL);

    jack_status_t status;
    jack_client_t *client = open_client(name, server, &status);
    if (client == NULL) {
        pthread_mutex_destroy(&o->reason_lock);
        PyMem_Free(queue);
        PyMem_Free(o);
        return jack_error("could not open a JACK client", status);
    }
    o->client = client;
    o->sample_rate = (double)jack_get_sample_rate(client);
    PyOS_snprintf(o->client_name, sizeof o->client_name, "%s", jack_get_client_name(client));
    o->port = jack_port_register(client, port_name, JACK_DEFAULT_MIDI_TYPE, JackPortIsOutput, 0);
    if (o->port != NULL)
        PyOS_snprintf(o->port_name, sizeof o->port_name, "%s", jack_port_name(o->port));
    int failed = o->port == NULL || jack_set_process_callback(client, process, o) != 0
                 || jack_set_port_connect_callback(client, port_connect, o) != 0;
    if (!failed)
        jack_on_info_shutdown(client, shutdown_callback, o);
    int activated = failed ? -1 : activate_client(client);
    if (activated != 0) {
        close_client(client);
        pthread_mutex_destroy(&o->reason_lock);
        PyMem_Free(queue);
        PyMem_Free(o);
        PyErr_SetString(PyExc_OSError, "could not register and activate the JACK MIDI output port");
        return NULL;
    }
    PyObject *capsule = PyCapsule_New(o, CAPSULE, destroy);
    if (capsule == NULL) {
        close_out(o);
        pthread_mutex_destroy(&o->reason_lock);
        PyMem_Free(queue);
        PyMem_Free(o);
    }
    return capsule;
}

static int event_bytes(PyObject *data, uint8_t out[3], uint32_t *size)
{
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) != 0)
        return -1;
    if (view.len < 1 || view.len > 3) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_ValueError, "a MIDI event of %zd bytes (1 to 3 go out here)", view.len);
        return -1;
    }
    memcpy(out, view.buf, (size_t)view.len);
    *size = (uint32_t)view.len;
    PyBuffer_Release(&view);
    return 0;
}

/* schedule(handle, frame, data) -> True, or False when the queue is full (the event is dropped
 * and counted) */
static PyObject *py_schedule(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *capsule, *data;
    long long frame;
    if (!PyArg_ParseTuple(args, "OLO", &capsule, &frame, &data))
        return NULL;
    Out *o = get(capsule);
    if (o == NULL)
        return NULL;
    Event e = {.frame = frame};
    if (event_bytes(data, e.data, &e.size) != 0)
        return NULL;
    uint64_t write_pos = o->write_pos;
    if (write_pos - __atomic_load_n(&o->read_pos, __ATOMIC_ACQUIRE) > o->mask) {
        add64(&o->dropped, 1);
        Py_RETURN_FALSE;
    }
    o->queue[write_pos & o->mask] = e;
    __atomic_store_n(&o->write_pos, write_pos + 1, __ATOMIC_RELEASE);
    Py_RETURN_TRUE;
}

static double monotonic_s(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

/* wait (without the GIL) until the panic is out, the server is gone or the time is up */
static int wait_panic(Out *o, double timeout_s)
{
    double deadline = monotonic_s() + timeout_s;
    int state;
    Py_BEGIN_ALLOW_THREADS
    struct timespec pause = {0, 500000};
    while ((state = __atomic_load_n(&o->panic_state, __ATOMIC_ACQUIRE)) == PANIC_REQUESTED
           && !__atomic_load_n(&o->server_gone, __ATOMIC_ACQUIRE) && monotonic_s() < deadline)
        nanosleep(&pause, NULL);
    Py_END_ALLOW_THREADS
    return state != PANIC_REQUESTED;
}

/* send_now(handle, messages, silence, timeout_s) -> True once the next cycle put them out: the
 * queue dropped, with ``silence`` a note-off first for every note out without its own */
static PyObject *py_send_now(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *capsule, *messages;
    int silence;
    double timeout_s;
    if (!PyArg_ParseTuple(args, "OOpd", &capsule, &messages, &silence, &timeout_s))
        return NULL;
    Out *o = get(capsule);
    if (o == NULL)
        return NULL;
    PyObject *items = PySequence_Fast(messages, "messages must be a sequence of bytes");
    if (items == NULL)
        return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(items);
    if (count > MAX_PANIC) {
        Py_DECREF(items);
        return PyErr_Format(PyExc_ValueError, "%zd messages in one panic (at most %d)", count, MAX_PANIC);
    }
    uint8_t (*parsed)[3] = PyMem_Calloc((size_t)(count > 0 ? count : 1), 3);
    uint8_t *sizes = PyMem_Calloc((size_t)(count > 0 ? count : 1), 1);
    if (parsed == NULL || sizes == NULL) {
        PyMem_Free(parsed);
        PyMem_Free(sizes);
        Py_DECREF(items);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        uint32_t size;
        if (event_bytes(PySequence_Fast_GET_ITEM(items, i), parsed[i], &size) != 0) {
            PyMem_Free(parsed);
            PyMem_Free(sizes);
            Py_DECREF(items);
            return NULL;
        }
        sizes[i] = (uint8_t)size;
    }
    Py_DECREF(items);
    /* one panic at a time: the callback may still be reading an earlier one that timed out */
    int ok = wait_panic(o, timeout_s);
    if (ok && !__atomic_load_n(&o->server_gone, __ATOMIC_ACQUIRE)) {
        memcpy(o->panic, parsed, (size_t)count * 3);
        memcpy(o->panic_size, sizes, (size_t)count);
        o->panic_count = (int)count;
        o->panic_silence = silence;
        __atomic_store_n(&o->panic_state, PANIC_REQUESTED, __ATOMIC_RELEASE);
        ok = wait_panic(o, timeout_s) && !__atomic_load_n(&o->server_gone, __ATOMIC_ACQUIRE);
    } else {
        ok = 0;
    }
    PyMem_Free(parsed);
    PyMem_Free(sizes);
    return PyBool_FromLong(ok);
}

/* now(handle) -> the frame clock now (64-bit, as the events' frames) */
static PyObject *py_now(PyObject *Py_UNUSED(self), PyObject *capsule)
{
    Out *o = get(capsule);
    if (o == NULL)
        return NULL;
    if (__atomic_load_n(&o->server_gone, __ATOMIC_ACQUIRE))
        return PyLong_FromLongLong(load64(&o->last_start));
    jack_nframes_t t = jack_frame_time(o->client);
    if (!__atomic_load_n(&o->have_start, __ATOMIC_ACQUIRE))
        return PyLong_FromLongLong((long long)t);
    return PyLong_FromLongLong(unwrap(load64(&o->last_start), t));
}

/* stats(handle) -> (sent, late, max frames late, lost (the port's buffer full), dropped (the queue
 * full), queued) */
static PyObject *py_stats(PyObject *Py_UNUSED(self), PyObject *capsule)
{
    Out *o = (Out *)PyCapsule_GetPointer(capsule, CAPSULE);
    if (o == NULL)
        return NULL;
    uint64_t queued = o->write_pos - __atomic_load_n(&o->read_pos, __ATOMIC_ACQUIRE);
    return Py_BuildValue("(LLLLLK)", (long long)load64(&o->sent), (long long)load64(&o->late),
                         (long long)load64(&o->max_late), (long long)load64(&o->lost),
                         (long long)load64(&o->dropped), (unsigned long long)queued);
}

/* reason(handle) -> (sequence number, text): what the notification thread last said ("" = the
 * port is connected again) */
static PyObject *py_reason(PyObject *Py_UNUSED(self), PyObject *capsule)
{
    Out *o = (Out *)PyCapsule_GetPointer(capsule, CAPSULE);
    if (o == NULL)
        return NULL;
    pthread_mutex_lock(&o->reason_lock);
    PyObject *result = Py_BuildValue("(Ks)", (unsigned long long)o->reason_seq, o->reason);
    pthread_mutex_unlock(&o->reason_lock);
    return result;
}

/* info(handle) -> (client name, port name, sample rate, server still there, had connections) */
static PyObject *py_info(PyObject *Py_UNUSED(self), PyObject *capsule)
{
    Out *o = (Out *)PyCapsule_GetPointer(capsule, CAPSULE);
    if (o == NULL)
        return NULL;
    return Py_BuildValue("(ssdOO)", o->client_name, o->port_name, o->sample_rate,
                         __atomic_load_n(&o->server_gone, __ATOMIC_ACQUIRE) ? Py_False : Py_True,
                         __atomic_load_n(&o->had_connections, __ATOMIC_ACQUIRE) ? Py_True : Py_False);
}

/* a list of JACK's port names (NULL: none), which are freed */
static PyObject *names(const char **ports)
{
    PyObject *list = PyList_New(0);
    for (int i = 0; list != NULL && ports != NULL && ports[i] != NULL; i++) {
        PyObject *name = PyUnicode_FromString(ports[i]);
        if (name == NULL || PyList_Append(list, name) != 0)
            Py_CLEAR(list);
        Py_XDECREF(name);
    }
    if (ports != NULL)
        jack_free(ports);
    return list;
}

/* ports(handle) -> names of the MIDI input ports that exist (where the output can connect) */
static PyObject *py_ports(PyObject *Py_UNUSED(self), PyObject *capsule)
{
    Out *o = get(capsule);
    if (o == NULL)
        return NULL;
    return names(jack_get_ports(o->client, NULL, JACK_DEFAULT_MIDI_TYPE, JackPortIsInput));
}

/* connections(handle) -> the ports the output is connected to */
static PyObject *py_connections(PyObject *Py_UNUSED(self), PyObject *capsule)
{
    Out *o = get(capsule);
    if (o == NULL)
        return NULL;
    if (__atomic_load_n(&o->server_gone, __ATOMIC_ACQUIRE))
        return PyList_New(0);
    return names(jack_port_get_connections(o->port));
}

/* connect(handle, destination port's full name) */
static PyObject *py_connect(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *capsule;
    const char *destination;
    if (!PyArg_ParseTuple(args, "Os", &capsule, &destination))
        return NULL;
    Out *o = get(capsule);
    if (o == NULL)
        return NULL;
    int result;
    Py_BEGIN_ALLOW_THREADS
    result = jack_connect(o->client, o->port_name, destination);
    Py_END_ALLOW_THREADS
    if (result != 0 && result != EEXIST)
        return PyErr_Format(PyExc_OSError, "JACK refused the connection (error %d)", result);
    __atomic_store_n(&o->had_connections, 1, __ATOMIC_RELEASE);
    Py_RETURN_NONE;
}

static PyObject *py_close(PyObject *Py_UNUSED(self), PyObject *capsule)
{
    Out *o = (Out *)PyCapsule_GetPointer(capsule, CAPSULE);
    if (o == NULL)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    close_out(o);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"open", py_open, METH_VARARGS, "Open and activate the JACK MIDI output client."},
    {"schedule", py_schedule, METH_VARARGS, "Queue an event (1-3 bytes) for a frame; False if the queue is full."},
    {"send_now", py_send_now, METH_VARARGS, "Drop the queue and send messages in the next cycle; True once out."},
    {"now", py_now, METH_O, "The frame clock now."},
    {"stats", py_stats, METH_O, "(sent, late, max frames late, lost, dropped, queued)."},
    {"reason", py_reason, METH_O, "(sequence, text) of the last connection loss or shutdown."},
    {"info", py_info, METH_O, "(client name, port name, sample rate, server alive, had connections)."},
    {"ports", py_ports, METH_O, "Names of the MIDI input ports."},
    {"connections", py_connections, METH_O, "Ports the output is connected to."},
    {"connect", py_connect, METH_VARARGS, "Connect the output to a MIDI input port."},
    {"close", py_close, METH_O, "Deactivate and close the client (idempotent)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_jackmidi", "The MIDI output's JACK client in C.", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__jackmidi(void) { return PyModule_Create(&module); }
