/* The audio input as a JACK client whose process callback is C: no Python, no GIL in JACK's
 * real-time thread.
 *
 * PortAudio's JACK host API runs sounddevice's Python callback in JACK's process thread, which
 * must take the GIL every period; this client copies its port's buffer straight into the shared
 * ring of sjtui.audio.ring.SharedRingBuffer (same layout, same publish protocol) and records the
 * capture-time anchor, the callback count and any frames the server never gave it. Used from
 * sjtui/audio/jack_input.py; the layout constants there and here must agree.
 *
 * Ring layout (bytes from `base`): int64 header[HEADER_SLOTS], int64 anchor_index[n_anchors],
 * float64 anchor_adc_s[n_anchors], float64 anchor_monotonic_s[n_anchors], float32 samples[capacity].
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <jack/jack.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "../_jackclient.h"

enum {
    H_WRITE_INDEX = 0,
    H_ANCHOR_COUNT = 1,
    H_OVERFLOW_COUNT = 2,
    H_LAST_OVERFLOW_INDEX = 3,
    H_CALLBACK_COUNT = 6,
    H_WRITER_ACTIVE = 7,
    H_FRAMES_LOST = 8,
    H_GAP_COUNT = 9,
    H_LAST_GAP_INDEX = 10,
};

typedef struct {
    jack_client_t *client;
    jack_port_t *port;
    int64_t *header;
    int64_t *anchor_index;
    double *anchor_adc_s;
    double *anchor_monotonic_s;
    float *samples;
    int64_t capacity;
    int64_t max_write;
    int64_t n_anchors;
    double sample_rate;
    jack_nframes_t previous_start; /* the last cycle's first frame, for gaps */
    jack_nframes_t previous_frames;
    volatile jack_nframes_t capture_latency; /* the port's, from the latency callback */
    int have_previous;
    volatile int server_gone;
    char port_name[320]; /* kept: once the server is gone, no jack_* call is safe but close */
    jack_nframes_t period;
    Py_buffer memory; /* the ring's block: held (exported) until close, so it cannot be unmapped under us */
} Input;

static void publish(int64_t *slot, int64_t value) { __atomic_store_n(slot, value, __ATOMIC_RELEASE); }

static int64_t load(int64_t *slot) { return __atomic_load_n(slot, __ATOMIC_ACQUIRE); }

static int process(jack_nframes_t frames, void *arg)
{
    Input *in = (Input *)arg;
    const float *buffer = (const float *)jack_port_get_buffer(in->port, frames);
    jack_nframes_t start = jack_last_frame_time(in->client);
    int64_t first_index = load(&in->header[H_WRITE_INDEX]);

    /* a cycle this client did not run (the server skipped it at an xrun): its frames never arrive */
    if (in->have_previous) {
        jack_nframes_t step = start - in->previous_start; /* unsigned: wraps with the frame clock */
        if (step > in->previous_frames) {
            publish(&in->header[H_FRAMES_LOST], load(&in->header[H_FRAMES_LOST]) + (int64_t)(step - in->previous_frames));
            publish(&in->header[H_GAP_COUNT], load(&in->header[H_GAP_COUNT]) + 1);
            publish(&in->header[H_LAST_GAP_INDEX], first_index);
        }
    }
    in->previous_start = start;
    in->previous_frames = frames;
    in->have_previous = 1;

    /* samples: copy first, then publish the new write index (readers trust only the index) */
    int64_t index = first_index;
    jack_nframes_t done = 0;
    while (done < frames) {
        int64_t n = frames - done;
        if (n > in->max_write)
            n = in->max_write;
        int64_t pos = index % in->capacity;
        int64_t head = n < in->capacity - pos ? n : in->capacity - pos;
        memcpy(in->samples + pos, buffer + done, (size_t)head * sizeof(float));
        if (head < n)
            memcpy(in->samples, buffer + done + head, (size_t)(n - head) * sizeof(float));
        index += n;
        publish(&in->header[H_WRITE_INDEX], index);
        done += (jack_nframes_t)n;
    }

    /* the anchor: the block's first sample was captured at the cycle's first frame (minus the
     * port's capture latency, as PortAudio reports it) and arrived now on the monotonic clock */
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t k = load(&in->header[H_ANCHOR_COUNT]);
    int64_t slot = k % in->n_anchors;
    in->anchor_index[slot] = first_index;
    in->anchor_adc_s[slot] = ((double)start - (double)in->capture_latency) / in->sample_rate;
    in->anchor_monotonic_s[slot] = (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
    publish(&in->header[H_ANCHOR_COUNT], k + 1);
    publish(&in->header[H_CALLBACK_COUNT], load(&in->header[H_CALLBACK_COUNT]) + 1);
    return 0;
}

/* JACK's notification thread: as PortAudio's JACK host API does, every xrun of the server counts
 * as an overflow (whichever client was late); frames this input lost are counted by process(). */
static int xrun(void *arg)
{
    Input *in = (Input *)arg;
    publish(&in->header[H_OVERFLOW_COUNT], load(&in->header[H_OVERFLOW_COUNT]) + 1);
    publish(&in->header[H_LAST_OVERFLOW_INDEX], load(&in->header[H_WRITE_INDEX]));
    return 0;
}

/* the graph's latencies changed (a connection, a server setting): keep the port's capture latency */
static void latency_callback(jack_latency_callback_mode_t mode, void *arg)
{
    Input *in = (Input *)arg;
    if (mode == JackCaptureLatency) {
        jack_latency_range_t range;
        jack_port_get_latency_range(in->port, JackCaptureLatency, &range);
        in->capture_latency = range.min;
    }
}

static void shutdown_callback(void *arg)
{
    Input *in = (Input *)arg;
    in->server_gone = 1;
    publish(&in->header[H_WRITER_ACTIVE], 0);
}

static const char *CAPSULE = "sjtui.audio._jackinput.Input";

static void close_input(Input *in)
{
    if (in->client != NULL) {
        jack_client_t *client = in->client;
        in->client = NULL;
        if (!in->server_gone) {
            jack_deactivate(client); /* returns after the last process() call */
            publish(&in->header[H_WRITER_ACTIVE], 0);
        }
        close_client(client);
    }
}

/* with the GIL: the client is closed, so the ring's memory can go */
static void release_memory(Input *in)
{
    if (in->memory.obj != NULL)
        PyBuffer_Release(&in->memory);
}

static void destroy(PyObject *capsule)
{
    Input *in = (Input *)PyCapsule_GetPointer(capsule, CAPSULE);
    if (in != NULL) {
        close_input(in);
        release_memory(in);
        PyMem_Free(in);
    }
}

static Input *get(PyObject *capsule)
{
    Input *in = (Input *)PyCapsule_GetPointer(capsule, CAPSULE);
    if (in != NULL && in->client == NULL) {
        PyErr_SetString(PyExc_ValueError, "the JACK input is closed");
        return NULL;
    }
    return in;
}

/* open(client_name, server_name or None, ring memory (a writable buffer: the shared block's mmap),
 * header_slots, capacity, max_write, n_anchors) -> handle. The client is active when this returns;
 * the memory stays exported (the mmap cannot be closed) until close(). */
static PyObject *py_open(PyObject *Py_UNUSED(self), PyObject *args)
{
    const char *name, *server;
    Py_buffer memory;
    Py_ssize_t header_slots, capacity, max_write, n_anchors;
    if (!PyArg_ParseTuple(args, "zzw*nnnn", &name, &server, &memory, &header_slots, &capacity, &max_write, &n_anchors))
        return NULL;
    if (name == NULL || header_slots < 11 || capacity < 2 * max_write || max_write < 1 || n_anchors < 1
        || memory.len < 8 * header_slots + 24 * n_anchors + 4 * capacity) {
        PyBuffer_Release(&memory);
        PyErr_SetString(PyExc_ValueError, "bad JACK input arguments (sizes, or a block smaller than the ring)");
        return NULL;
    }
    Input *in = (Input *)PyMem_Calloc(1, sizeof(Input));
    if (in == NULL) {
        PyBuffer_Release(&memory);
        return PyErr_NoMemory();
    }
    in->memory = memory;
    char *p = (char *)memory.buf;
    in->header = (int64_t *)p;
    p += 8 * header_slots;
    in->anchor_index = (int64_t *)p;
    in->anchor_adc_s = (double *)(p + 8 * n_anchors);
    in->anchor_monotonic_s = (double *)(p + 16 * n_anchors);
    in->samples = (float *)(p + 24 * n_anchors);
    in->capacity = capacity;
    in->max_write = max_write;
    in->n_anchors = n_anchors;

    jack_status_t status;
    jack_client_t *client = open_client(name, server, &status);
    if (client == NULL) {
        release_memory(in);
        PyMem_Free(in);
        return jack_error("could not open a JACK client", status);
    }
    in->client = client;
    in->sample_rate = (double)jack_get_sample_rate(client);
    in->period = jack_get_buffer_size(client);
    in->port = jack_port_register(client, "in", JACK_DEFAULT_AUDIO_TYPE, JackPortIsInput | JackPortIsTerminal, 0);
    if (in->port != NULL)
        PyOS_snprintf(in->port_name, sizeof in->port_name, "%s", jack_port_name(in->port));
    int failed = in->port == NULL || jack_set_process_callback(client, process, in) != 0
                 || jack_set_xrun_callback(client, xrun, in) != 0
                 || jack_set_latency_callback(client, latency_callback, in) != 0;
    if (!failed)
        jack_on_shutdown(client, shutdown_callback, in);
    publish(&in->header[H_WRITER_ACTIVE], 1);
    int activated = failed ? -1 : activate_client(client);
    if (activated != 0) {
        publish(&in->header[H_WRITER_ACTIVE], 0);
        close_client(client);
        release_memory(in);
        PyMem_Free(in);
        PyErr_SetString(PyExc_OSError, "could not register and activate the JACK input port");
        return NULL;
    }
    PyObject *capsule = PyCapsule_New(in, CAPSULE, destroy);
    if (capsule == NULL) {
        close_input(in);
        release_memory(in);
        PyMem_Free(in);
    }
    return capsule;
}

/* connect(handle, pattern, channel) -> the source port's name: the channel-th (from 1) audio output
 * port whose name matches the regular expression (a JACK client's ports: "^client:"), as PortAudio
 * numbers a JACK device's channels. */
static PyObject *py_connect(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *capsule;
    const char *pattern;
    int channel;
    if (!PyArg_ParseTuple(args, "Osi", &capsule, &pattern, &channel))
        return NULL;
    Input *in = get(capsule);
    if (in == NULL)
        return NULL;
    const char **ports = jack_get_ports(in->client, pattern, JACK_DEFAULT_AUDIO_TYPE, JackPortIsOutput);
    int count = 0;
    while (ports != NULL && ports[count] != NULL)
        count++;
    if (channel < 1 || channel > count) {
        if (ports != NULL)
            jack_free(ports);
        return PyErr_Format(PyExc_OSError, "%d JACK audio output port(s) match %s, so there is no channel %d", count,
                            pattern, channel);
    }
    PyObject *name = PyUnicode_FromString(ports[channel - 1]);
    int result;
    Py_BEGIN_ALLOW_THREADS
    result = jack_connect(in->client, ports[channel - 1], jack_port_name(in->port));
    Py_END_ALLOW_THREADS
    jack_free(ports);
    if (result != 0 && result != EEXIST) {
        Py_XDECREF(name);
        return PyErr_Format(PyExc_OSError, "could not connect the JACK input to its source (error %d)", result);
    }
    return name;
}

static PyObject *py_close(PyObject *Py_UNUSED(self), PyObject *capsule)
{
    Input *in = (Input *)PyCapsule_GetPointer(capsule, CAPSULE);
    if (in == NULL)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    close_input(in);
    Py_END_ALLOW_THREADS
    release_memory(in);
    Py_RETURN_NONE;
}

/* info(handle) -> (port name, sample rate, period in frames, frame clock now, capture latency in
 * frames, server still there) */
static PyObject *py_info(PyObject *Py_UNUSED(self), PyObject *capsule)
{
    Input *in = get(capsule);
    if (in == NULL)
        return NULL;
    if (in->server_gone)
        return Py_BuildValue("(sIIIIO)", in->port_name, (unsigned int)in->sample_rate, in->period, 0u,
                             in->capture_latency, Py_False);
    return Py_BuildValue("(sIIIIO)", in->port_name, (unsigned int)in->sample_rate, jack_get_buffer_size(in->client),
                         jack_frame_time(in->client), in->capture_latency, Py_True);
}

static PyMethodDef methods[] = {
    {"open", py_open, METH_VARARGS, "Open and activate the JACK input client writing into a shared ring."},
    {"connect", py_connect, METH_VARARGS, "Connect a JACK client's channel-th audio output to the input."},
    {"info", py_info, METH_O, "(port name, sample rate, period, frame time, capture latency, server alive)."},
    {"close", py_close, METH_O, "Deactivate and close the client (idempotent)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_jackinput", "The audio input's JACK client in C.", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__jackinput(void) { return PyModule_Create(&module); }
