/* What sjtui's C JACK clients share (sjtui/audio/_jackinput.c, sjtui/midi/_jackmidi.c): opening a
 * client on the default or a named server without starting one, and the error when that fails.
 * Included by both (static functions: each extension module gets its own copy). */
#ifndef SJTUI_JACKCLIENT_H
#define SJTUI_JACKCLIENT_H

#include <Python.h>
#include <jack/jack.h>
#include <pthread.h>
#include <signal.h>

/* libjack starts its threads in jack_client_open (server notifications) and jack_activate (the
 * process callback); they inherit the caller's signal mask. Block every asynchronous signal
 * while they start, so none of them ever takes one: an interrupted read of the server socket is
 * taken for a dead server ("JackSocketClientChannel read fail"), and the main thread, which runs
 * Python's handlers, would not be woken (sjtui/signals.py). */
static void block_async_signals(sigset_t *previous)
{
    sigset_t set;
    sigfillset(&set);
    int synchronous[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS};
    for (size_t i = 0; i < sizeof synchronous / sizeof synchronous[0]; i++)
        sigdelset(&set, synchronous[i]);
    pthread_sigmask(SIG_BLOCK, &set, previous);
}

/* with the GIL held; released while JACK connects (it waits for the server) */
static jack_client_t *open_client(const char *name, const char *server, jack_status_t *status)
{
    jack_client_t *client;
    sigset_t previous;
    *status = 0;
    Py_BEGIN_ALLOW_THREADS
    block_async_signals(&previous);
    if (server != NULL)
        client = jack_client_open(name, JackNoStartServer | JackServerName, status, server);
    else
        client = jack_client_open(name, JackNoStartServer, status);
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    Py_END_ALLOW_THREADS
    return client;
}

/* with the GIL held; released while the server adds the client to its graph */
static int activate_client(jack_client_t *client)
{
    int activated;
    sigset_t previous;
    Py_BEGIN_ALLOW_THREADS
    block_async_signals(&previous);
    activated = jack_activate(client);
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    Py_END_ALLOW_THREADS
    return activated;
}

/* libjack saves the mask it sees when a process opens its first client (in open_client: all
 * blocked) and sets it again in the thread that closes the last one: keep the caller's */
static void close_client(jack_client_t *client)
{
    sigset_t mine;
    pthread_sigmask(SIG_SETMASK, NULL, &mine);
    jack_client_close(client);
    pthread_sigmask(SIG_SETMASK, &mine, NULL);
}

/* sets OSError and returns NULL */
static PyObject *jack_error(const char *what, jack_status_t status)
{
    if (status & JackServerFailed)
        return PyErr_Format(PyExc_OSError, "%s: no JACK server is running (jack_status 0x%x)", what, status);
    return PyErr_Format(PyExc_OSError, "%s (jack_status 0x%x)", what, status);
}

#endif
