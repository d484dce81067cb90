/* Open MPI's MPI_Allreduce (sum, f32; out-of-place and MPI_IN_PLACE) and
 * MPI_Allgather timed like `exodus comm bench`: per size, 2 warm-up and
 * ITERS timed calls each after a barrier, the slowest rank's mean time,
 * algbw and nccl-tests' busbw. One line per size and collective:
 *
 *   bytes count op out_of_place_us in_place_us   (in_place_us: -1 if none)
 *
 * mpicc -O2 -o /tmp/mpi_collectives bench/mpi/collectives.c
 * mpirun -n 2 --allow-run-as-root /tmp/mpi_collectives [MIN_BYTES MAX_BYTES FACTOR]
 * (bench/comm_vs_mpi.py runs it next to `exodus comm bench`.)
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ITERS 10

/* The slowest rank's mean time of one collective, seconds. */
static double timed(int op, int in_place, float *in, float *out, size_t count, float *src, int n) {
    double total = 0;
    for (int it = 0; it < ITERS + 2; it++) {
        if (in_place)
            memcpy(out, src, count * sizeof(float));
        MPI_Barrier(MPI_COMM_WORLD);
        double t = MPI_Wtime();
        if (op == 0)
            MPI_Allreduce(in_place ? MPI_IN_PLACE : in, out, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        else
            MPI_Allgather(in, (int)count, MPI_FLOAT, out, (int)count, MPI_FLOAT, MPI_COMM_WORLD);
        t = MPI_Wtime() - t;
        if (it >= 2)
            total += t;
    }
    double mean = total / ITERS, slowest;
    MPI_Allreduce(&mean, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    (void)n;
    return slowest;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, n;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    size_t min_bytes = argc > 1 ? strtoull(argv[1], 0, 10) : 8;
    size_t max_bytes = argc > 2 ? strtoull(argv[2], 0, 10) : (64u << 20);
    size_t factor = argc > 3 ? strtoull(argv[3], 0, 10) : 4;
    if (rank == 0)
        printf("# bytes count op out_of_place_us in_place_us\n");
    for (size_t bytes = min_bytes; bytes <= max_bytes; bytes *= factor) {
        for (int op = 0; op < 2; op++) {
            size_t count = op == 0 ? bytes / 4 : bytes / 4 / n;
            if (count == 0)
                count = 1;
            float *in = malloc(count * sizeof(float));
            float *out = malloc(count * n * sizeof(float));
            for (size_t i = 0; i < count; i++)
                in[i] = (float)((rank * 31 + i * 7) % 17) - 8.0f;
            memset(out, 0, count * n * sizeof(float));
            double oop = timed(op, 0, in, out, count, in, n);
            double ip = op == 0 ? timed(op, 1, in, out, count, in, n) : -1e-6;
            size_t moved = op == 0 ? count * 4 : count * n * 4;
            if (rank == 0)
                printf("%zu %zu %s %.3f %.3f\n", moved, count, op == 0 ? "all_reduce" : "all_gather", oop * 1e6, ip * 1e6);
            free(in);
            free(out);
        }
    }
    MPI_Finalize();
    return 0;
}
