/* What sjtui's C JACK clients share (sjtui/audio/_jackinput.c, sjtui/midi/_jackmidi.c): opening a
 * client on the default or a named server without starting one, and the error when that fails.
 * Included by both (static functions: each extension module gets its own copy). */
#ifndef SJTUI_JACKCLIENT_H
#define SJTUI_JACKCLIENT_H

#include <Python.h>
#include <jack/jack.h>

/* with the GIL held; released while JACK connects (it waits for the server) */
static jack_client_t *open_client(const char *name, const char *server, jack_status_t *status)
{
    jack_client_t *client;
    *status = 0;
    Py_BEGIN_ALLOW_THREADS
    if (server != NULL)
        client = jack_client_open(name, JackNoStartServer | JackServerName, status, server);
    else
        client = jack_client_open(name, JackNoStartServer, status);
    Py_END_ALLOW_THREADS
    return client;
}

/* sets OSError and returns NULL */
static PyObject *jack_error(const char *what, jack_status_t status)
{
    if (status & JackServerFailed)
        return PyErr_Format(PyExc_OSError, "%s: no JACK server is running (jack_status 0x%x)", what, status);
    return PyErr_Format(PyExc_OSError, "%s (jack_status 0x%x)", what, status);
}

#endif
