// bizzy: an ebizzy-like memory workload for the test guest (our own code).
//
// Allocates CHUNKS buffers of CHUNK_SIZE bytes (one malloc each; 1 MiB is
// above glibc's mmap threshold, so each chunk is its own anonymous mapping
// and free() hands it straight back to the kernel), fills each with sorted
// 64-bit records, then for SECONDS, in THREADS threads, repeatedly:
//   pick a random chunk, memcpy it into a private buffer, and look up
//   SEARCHES random keys in the copy with bsearch(3).
// Each chunk copied and searched counts as one record, as ebizzy counts.
// At the end it prints one line, in a single write(2):
//   VUB bizzy chunks=N chunk_kib=K threads=T seconds=S records=R rps=R/s alloc_ms=M up=<guest uptime>
// or, if the chunks cannot be allocated:
//   VUB bizzy chunks=N ... error=<what>
// then frees everything and exits (0, or 1 on error).
//
// Usage: bizzy [-n CHUNKS] [-s CHUNK_BYTES] [-t SECONDS] [-T THREADS] [-r SEED]
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SEARCHES 4

struct opts {
	long chunks;
	long chunk_bytes;
	double seconds;
	long threads;
	unsigned long seed;
};

static uint64_t **chunks;
static size_t records_per_chunk;
static struct opts o = { .chunks = 256, .chunk_bytes = 1 << 20, .seconds = 10, .threads = 1, .seed = 1 };
static volatile int stop;

struct worker {
	pthread_t tid;
	uint64_t state;
	uint64_t records;
	uint64_t found;
	uint64_t *copy;
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* xorshift64*: small, fast, per thread (rand(3) would serialise threads). */
static uint64_t next_rand(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 2685821657736338717ULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* Sorted keys: record i lies in [i * 16, i * 16 + 15], so bsearch finds some and misses others. */
static void fill(uint64_t *c, uint64_t *s)
{
	for (size_t i = 0; i < records_per_chunk; i++)
		c[i] = (uint64_t)i * 16 + (next_rand(s) & 15);
}

static void *work(void *arg)
{
	struct worker *w = arg;

	while (!stop) {
		uint64_t *src = chunks[next_rand(&w->state) % (uint64_t)o.chunks];

		memcpy(w->copy, src, records_per_chunk * sizeof(uint64_t));
		for (int k = 0; k < SEARCHES; k++) {
			uint64_t key = next_rand(&w->state) % (records_per_chunk * 16);

			if (bsearch(&key, w->copy, records_per_chunk, sizeof(uint64_t), cmp_u64))
				w->found++;
		}
		w->records++;
	}
	return NULL;
}

static double uptime(void)
{
	double up = -1;
	FILE *f = fopen("/proc/uptime", "r");

	if (f) {
		if (fscanf(f, "%lf", &up) != 1)
			up = -1;
		fclose(f);
	}
	return up;
}

/* The whole line in one write(2): console lines from other writers never cut into it. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(STDOUT_FILENO, line, n) < 0)
		exit(1);
}

static long parse_long(const char *s, const char *what, long min)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < min) {
		fprintf(stderr, "bizzy: bad %s '%s' (an integer >= %ld)\n", what, s, min);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	struct worker *workers;
	double t0, t1, start, elapsed;
	uint64_t fill_state, records = 0, found = 0;
	char head[160];
	int c;

	while ((c = getopt(argc, argv, "n:s:t:T:r:")) != -1) {
		switch (c) {
		case 'n': o.chunks = parse_long(optarg, "chunk count", 1); break;
		case 's': o.chunk_bytes = parse_long(optarg, "chunk size", 4096); break;
		case 't': {
			char *end;

			o.seconds = strtod(optarg, &end);
			if (*end || end == optarg || !(o.seconds > 0)) {
				fprintf(stderr, "bizzy: bad seconds '%s'\n", optarg);
				return 2;
			}
			break;
		}
		case 'T': o.threads = parse_long(optarg, "thread count", 1); break;
		case 'r': o.seed = (unsigned long)parse_long(optarg, "seed", 0); break;
		default:
			fprintf(stderr, "usage: bizzy [-n CHUNKS] [-s CHUNK_BYTES] [-t SECONDS] [-T THREADS] [-r SEED]\n");
			return 2;
		}
	}
	records_per_chunk = (size_t)o.chunk_bytes / sizeof(uint64_t);
	snprintf(head, sizeof(head), "bizzy chunks=%ld chunk_kib=%ld threads=%ld seconds=%g",
		 o.chunks, o.chunk_bytes / 1024, o.threads, o.seconds);

	t0 = now();
	fill_state = o.seed * 0x9e3779b97f4a7c15ULL + 1;
	chunks = calloc(o.chunks, sizeof(*chunks));
	workers = calloc(o.threads, sizeof(*workers));
	if (!chunks || !workers) {
		say("VUB %s error=calloc up=%.2f", head, uptime());
		return 1;
	}
	for (long i = 0; i < o.chunks; i++) {
		chunks[i] = malloc(records_per_chunk * sizeof(uint64_t));
		if (!chunks[i]) {
			say("VUB %s error=malloc-chunk-%ld up=%.2f", head, i, uptime());
			return 1;
		}
		fill(chunks[i], &fill_state);
	}
	for (long i = 0; i < o.threads; i++) {
		workers[i].state = (o.seed + 1) * 0xbf58476d1ce4e5b9ULL + (uint64_t)i * 0x94d049bb133111ebULL + 1;
		workers[i].copy = malloc(records_per_chunk * sizeof(uint64_t));
		if (!workers[i].copy) {
			say("VUB %s error=malloc-copy up=%.2f", head, uptime());
			return 1;
		}
	}
	t1 = now();

	start = now();
	for (long i = 0; i < o.threads; i++) {
		if (pthread_create(&workers[i].tid, NULL, work, &workers[i])) {
			say("VUB %s error=pthread_create up=%.2f", head, uptime());
			return 1;
		}
	}
	{
		struct timespec ts = { (time_t)o.seconds, (long)((o.seconds - (time_t)o.seconds) * 1e9) };

		while (nanosleep(&ts, &ts) && errno == EINTR)
			;
	}
	stop = 1;
	for (long i = 0; i < o.threads; i++) {
		pthread_join(workers[i].tid, NULL);
		records += workers[i].records;
		found += workers[i].found;
	}
	elapsed = now() - start;

	for (long i = 0; i < o.chunks; i++)
		free(chunks[i]);
	for (long i = 0; i < o.threads; i++)
		free(workers[i].copy);
	free(chunks);
	free(workers);
	say("VUB %s records=%" PRIu64 " rps=%.0f found=%" PRIu64 " alloc_ms=%.0f elapsed=%.2f up=%.2f",
	    head, records, records / elapsed, found, (t1 - t0) * 1000, elapsed, uptime());
	return 0;
}
