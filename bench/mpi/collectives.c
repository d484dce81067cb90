/* Open MPI's MPI_Allreduce (sum, f32) and MPI_Allgather timed like
 * `exodus comm bench`: per size, 2 warm-up and ITERS timed calls after a
 * barrier, the slowest rank's mean time, algbw and nccl-tests' busbw.
 *
 * mpicc -O2 -o /tmp/mpi_collectives bench/mpi/collectives.c
 * mpirun -n 2 --allow-run-as-root /tmp/mpi_collectives [MIN_BYTES MAX_BYTES]
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ITERS 10

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, n;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    size_t min_bytes = argc > 1 ? strtoull(argv[1], 0, 10) : 8;
    size_t max_bytes = argc > 2 ? strtoull(argv[2], 0, 10) : (64u << 20);
    if (rank == 0)
        printf("%12s %10s %12s %11s %10s %10s\n", "bytes", "count", "op", "time (us)", "algbw GB/s", "busbw GB/s");
    for (size_t bytes = min_bytes; bytes <= max_bytes; bytes *= 4) {
        for (int op = 0; op < 2; op++) {
            size_t count = op == 0 ? bytes / 4 : bytes / 4 / n;
            if (count == 0) count = 1;
            float *in = malloc(count * sizeof(float));
            float *out = malloc(count * n * sizeof(float));
            for (size_t i = 0; i < count; i++) in[i] = (float)((rank * 31 + i * 7) % 17) - 8.0f;
            double total = 0;
            for (int it = 0; it < ITERS + 2; it++) {
                MPI_Barrier(MPI_COMM_WORLD);
                double t = MPI_Wtime();
                if (op == 0)
                    MPI_Allreduce(in, out, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
                else
                    MPI_Allgather(in, (int)count, MPI_FLOAT, out, (int)count, MPI_FLOAT, MPI_COMM_WORLD);
                t = MPI_Wtime() - t;
                if (it >= 2) total += t;
            }
            double mean = total / ITERS, slowest;
            MPI_Allreduce(&mean, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
            size_t moved = op == 0 ? count * 4 : count * n * 4;
            double algbw = moved / slowest / 1e9;
            double factor = op == 0 ? 2.0 * (n - 1) / n : (double)(n - 1) / n;
            if (rank == 0)
                printf("%12zu %10zu %12s %11.1f %10.3f %10.3f\n", moved, count, op == 0 ? "all_reduce" : "all_gather",
                       slowest * 1e6, algbw, algbw * factor);
            free(in);
            free(out);
        }
    }
    MPI_Finalize();
    return 0;
}
