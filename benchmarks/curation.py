"""Curation benchmarks, each against a baseline measured in the same run.

    python benchmarks/curation.py [--drive-hours 100] [--vectors 1000000] [--dim 384]

Mining: the whole scenario library over ``--drive-hours`` of drive tables (simulated drives,
decoded, then replicated under new vehicle ids until they add up), against one plain DuckDB
scan of the same tables (a sum over every row of ``tracks`` and ``vehicle_state``) in the
same run. Tracks are the car's own object lists here (no labelling), which is what the
queries read for a drive without offboard labels.

Search: top-10 latency of one query at a time (as ``dataloop search`` asks) over
``--vectors`` unit vectors, brute force (faiss ``IndexFlatIP``) against the approximate index
the search uses above its threshold (``IndexIVFFlat``), with the index's recall@10 against
brute force and its build time. The vectors are synthetic: clusters of unit vectors (as
embeddings of similar scenes are; uniform noise has no neighbours worth finding), and the
queries are held-out points of the same clusters, not copies of indexed ones.
Encoders: frames/s and descriptions/s of the default image and text encoders.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from dataloop.search import vectors as V


def clustered_unit_vectors(
    n: int, dim: int, clusters: int = 4096, spread: float = 0.6, seed: int = 0
) -> np.ndarray:
    """``n`` unit vectors around ``clusters`` random centres, built in blocks (little memory)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    out = np.empty((n, dim), np.float32)
    for i in range(0, n, 100_000):
        m = min(100_000, n - i)
        block = centres[rng.integers(0, clusters, m)]
        block += spread * rng.normal(size=(m, dim)).astype(np.float32)
        out[i : i + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def _latencies(index, vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[list, list]:
    times, found = [], []
    for q in queries:
        start = time.perf_counter()
        _, ids = V.top_k(index, vectors, q, k)
        times.append(time.perf_counter() - start)
        found.append(set(ids.tolist()))
    return times, found


def search_benchmark(
    n_vectors: int = 1_000_000, dim: int = 384, n_queries: int = 200, k: int = 10
) -> dict[str, float]:
    """Brute force against the approximate index over ``n_vectors``: latency, recall@k."""
    start = time.perf_counter()
    points = clustered_unit_vectors(n_vectors + n_queries, dim)
    vectors, queries = points[:n_vectors], points[n_vectors:]  # held out: unseen scenes
    made = time.perf_counter() - start

    start = time.perf_counter()
    flat = V.flat_index(vectors)
    flat_build = time.perf_counter() - start
    start = time.perf_counter()
    ivf = V.ivf_index(vectors)
    ivf_build = time.perf_counter() - start

    _latencies(flat, vectors, queries[:5], k)  # warm up
    _latencies(ivf, vectors, queries[:5], k)
    flat_t, exact = _latencies(flat, vectors, queries, k)
    ivf_t, approx = _latencies(ivf, vectors, queries, k)
    recall = float(np.mean([len(a & e) / k for a, e in zip(approx, exact, strict=True)]))
    result = {
        "vectors": n_vectors,
        "dim": dim,
        "flat_ms": 1000 * statistics.median(flat_t),
        "ivf_ms": 1000 * statistics.median(ivf_t),
        "flat_p95_ms": 1000 * float(np.percentile(flat_t, 95)),
        "ivf_p95_ms": 1000 * float(np.percentile(ivf_t, 95)),
        "recall_at_10": recall,
        "flat_build_s": flat_build,
        "ivf_build_s": ivf_build,
        "nlist": ivf.nlist,
        "nprobe": ivf.nprobe,
    }
    print(f"search: {n_vectors:,} x {dim} clustered unit vectors (made in {made:.1f} s)")
    print(
        f"  brute force (IndexFlatIP): {result['flat_ms']:8.2f} ms/query median, "
        f"{result['flat_p95_ms']:.2f} p95; built in {flat_build:.1f} s"
    )
    print(
        f"  IVF (nlist {ivf.nlist}, nprobe {ivf.nprobe}): {result['ivf_ms']:8.2f} ms/query "
        f"median, {result['ivf_p95_ms']:.2f} p95; trained and filled in {ivf_build:.1f} s"
    )
    print(
        f"  ratio brute force / IVF: {result['flat_ms'] / result['ivf_ms']:.1f}x faster; "
        f"IVF recall@{k} vs brute force {recall:.3f}"
    )
    return result


def encoder_benchmark(n_images: int = 256, n_texts: int = 512) -> dict[str, float]:
    """Frames/s of the image encoder and descriptions/s of the text encoder (after loading)."""
    from dataloop.search.encoders import image_encoder, text_encoder, torch_threads

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (192, 320, 3), dtype=np.uint8) for _ in range(n_images)]
    texts = [
        f"night at an intersection; a pedestrian crosses; {i % 9} cars nearby"
        for i in range(n_texts)
    ]
    start = time.perf_counter()
    image, text = image_encoder(), text_encoder()
    load = time.perf_counter() - start
    image.encode(frames[:16]), text.encode(texts[:16])  # warm up
    start = time.perf_counter()
    image.encode(frames)
    fps = n_images / (time.perf_counter() - start)
    start = time.perf_counter()
    text.encode(texts)
    tps = n_texts / (time.perf_counter() - start)
    print(f"encoders ({torch_threads()} torch thread(s)), loaded in {load:.1f} s:")
    print(f"  {image.name}: {fps:8.1f} frames/s (320x192 camera frames)")
    print(f"  {text.name}: {tps:8.1f} descriptions/s")
    return {"frames_per_s": fps, "descriptions_per_s": tps, "load_s": load}


def mining_benchmark(drive_hours: float = 100.0, seed: int = 7) -> dict:
    """Drive-hours mined per second, and mining time over a plain scan of the same tables."""
    import tempfile
    from dataclasses import replace
    from datetime import UTC, datetime
    from pathlib import Path

    import pyarrow as pa

    from dataloop.curation.scenarios import load_scenarios, mine, open_views
    from dataloop.fleet.simulator.config import SimConfig
    from dataloop.fleet.simulator.fleet import simulate_fleet
    from dataloop.ingest.decode import decode_log
    from dataloop.ingest.tables import put_table
    from dataloop.lake.local import LocalStore

    with tempfile.TemporaryDirectory() as tmp:
        reports = simulate_fleet(
            vehicles=2,
            minutes=3.0,
            seed=seed,
            out=Path(tmp) / "logs",
            start=datetime(2026, 11, 25, 8, tzinfo=UTC),
            config=replace(SimConfig().without_faults(), camera_size=(64, 48)),
        )
        sources = []
        for r in reports:
            for d in r.drives:
                with open(d["path"], "rb") as f:
                    sources.append((d, decode_log(f, vehicle=r.vehicle, drive=d["drive"]).tables))
        seconds = sum(d["seconds"] for d, _ in sources)
        copies = int(drive_hours * 3600 / seconds) + 1
        store = LocalStore(Path(tmp) / "lake")
        drives = []
        for i in range(copies):
            for j, (d, tables) in enumerate(sources):
                vehicle, drive = f"bench-{i:05d}", f"drive-{j:03d}"
                keys = {}
                for name in ("vehicle_state", "events", "objects"):
                    t = tables[name]
                    t = t.set_column(0, "vehicle_id", pa.array([vehicle] * t.num_rows))
                    t = t.set_column(1, "drive_id", pa.array([drive] * t.num_rows))
                    keys[name] = put_table(store, name, vehicle, drive, t)["key"]
                drives.append(
                    {
                        "vehicle_id": vehicle,
                        "drive_id": drive,
                        "drive_version": "bench",
                        "road": d["road"],
                        "conditions": d["conditions"],
                        "tables": keys,
                        "labels": None,
                    }
                )
        hours = copies * seconds / 3600

        # the lake was just written: mining and the scan both read it from the page cache
        start = time.perf_counter()
        # the shared views computed (ego_pose, once per day) count as mining
        tables = open_views(store, drives, "duckdb")
        clips, counts = mine(tables, load_scenarios(), "2026-11-25")
        mining = time.perf_counter() - start
        start = time.perf_counter()
        con = tables.con
        rows = con.sql("SELECT count(*), sum(x + y + vx + vy) FROM tracks").fetchall()[0][0]
        rows += con.sql(
            "SELECT count(*), sum(speed_mps + yaw_rate_radps) FROM vehicle_state"
        ).fetchall()[0][0]
        scan_s = time.perf_counter() - start
    print(f"mining: {hours:.1f} drive-hours, {len(drives)} drives, {rows / 1e6:.1f} M rows")
    print(f"  plain scan {scan_s:6.2f} s   mining {mining:6.2f} s   ratio {mining / scan_s:5.1f}x")
    print(f"  {hours / mining:.1f} drive-hours mined per second; {clips.num_rows} clips")
    print("  " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return {"drive_hours": hours, "scan_s": scan_s, "mining_s": mining, "clips": clips.num_rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--drive-hours", type=float, default=100.0)
    ap.add_argument("--vectors", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--skip-encoders", action="store_true")
    args = ap.parse_args()
    mining_benchmark(args.drive_hours)
    search_benchmark(args.vectors, args.dim, args.queries)
    if not args.skip_encoders:
        encoder_benchmark()


if __name__ == "__main__":
    main()
