/*
 * Spore's pause program: the process that holds a pod sandbox's namespaces.
 * It sleeps until SIGTERM or SIGINT and reaps any child re-parented to it (it is PID 1 of the
 * pod when the pod shares a PID namespace). Built static (gcc -static -Os) by the e2e harness.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_stop(int sig) {
    (void)sig;
    stop = 1;
}

static void on_child(int sig) {
    (void)sig;
    int saved = errno;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    errno = saved;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        printf("spore-pause\n");
        return 0;
    }
    if (getpid() != 1) {
        fprintf(stderr, "spore-pause: warning: not running as PID 1\n");
    }

    struct sigaction stop_action;
    memset(&stop_action, 0, sizeof stop_action);
    stop_action.sa_handler = on_stop;
    sigemptyset(&stop_action.sa_mask);
    if (sigaction(SIGINT, &stop_action, NULL) < 0 || sigaction(SIGTERM, &stop_action, NULL) < 0) {
        perror("spore-pause: sigaction");
        return 1;
    }

    struct sigaction child_action;
    memset(&child_action, 0, sizeof child_action);
    child_action.sa_handler = on_child;
    child_action.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    sigemptyset(&child_action.sa_mask);
    if (sigaction(SIGCHLD, &child_action, NULL) < 0) {
        perror("spore-pause: sigaction");
        return 2;
    }

    /* Block the stop signals outside sigsuspend so that none is lost between the check and the wait. */
    sigset_t blocked, waiting;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGINT);
    sigaddset(&blocked, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &blocked, &waiting) < 0) {
        perror("spore-pause: sigprocmask");
        return 3;
    }
    sigdelset(&waiting, SIGINT);
    sigdelset(&waiting, SIGTERM);
    while (!stop) {
        sigsuspend(&waiting);
    }
    fprintf(stderr, "spore-pause: shutting down\n");
    return 0;
}
