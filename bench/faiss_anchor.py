"""The FAISS anchor of the index benchmark (bench/index.ts): IndexFlatIP over the same inner-product
rewrite, the same items and the same queries, on one thread.

Reads DIR/items.npy [N, n+1] (rows [a_i, c_i]), DIR/single.npy and DIR/batch.npy (rows [-b, -1]), so
the largest inner product is the smallest S_i = <a_i, b> + c_i, i.e. the smallest KL. Times
single-query searches (after `--warmup` untimed ones) and batches of `--batch-size` (the first
untimed), and prints one JSON line: median ms per query both ways and the top-k ids of the timed
single queries (the benchmark compares them with the exact hits).

Run by bench/index.ts with Debian's python3-faiss, without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE
(which slow OpenBLAS on the development machine) and with OMP/OpenBLAS limited to one thread.
"""
import argparse
import json
import statistics
import time

import faiss
import numpy as np

p = argparse.ArgumentParser()
p.add_argument('dir')
p.add_argument('--k', type=int, default=10)
p.add_argument('--warmup', type=int, default=5)
p.add_argument('--batch-size', type=int, default=64)
a = p.parse_args()

faiss.omp_set_num_threads(1)
items = np.load(f'{a.dir}/items.npy')
single = np.load(f'{a.dir}/single.npy')
batch = np.load(f'{a.dir}/batch.npy')
t0 = time.perf_counter()
index = faiss.IndexFlatIP(items.shape[1])
index.add(items)
build = time.perf_counter() - t0
del items

for i in range(a.warmup):
    index.search(single[i:i + 1], a.k)
times, ids = [], []
for i in range(a.warmup, len(single)):
    t0 = time.perf_counter()
    _, I = index.search(single[i:i + 1], a.k)
    times.append((time.perf_counter() - t0) * 1000)
    ids.append(I[0].tolist())

bs = a.batch_size
per_query = []
for j in range(len(batch) // bs):
    t0 = time.perf_counter()
    index.search(batch[j * bs:(j + 1) * bs], a.k)
    ms = (time.perf_counter() - t0) * 1000
    if j > 0:  # the first batch is a warm-up
        per_query.append(ms / bs)

print(json.dumps({
    'faiss': faiss.__version__,
    'threads': faiss.omp_get_max_threads(),
    'buildSeconds': round(build, 3),
    'singleMedianMsPerQuery': round(statistics.median(times), 3),
    'batchedMedianMsPerQuery': round(statistics.median(per_query), 3),
    'ids': ids,
}))
