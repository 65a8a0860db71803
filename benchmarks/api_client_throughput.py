"""Requests/s of the async API captioning client at concurrency 1 vs 32, on a local server.

Starts `serve_canned` (an OpenAI-compatible chat server on 127.0.0.1) whose every reply takes
`--latency-ms` to stand in for generation time, then captions the same `--requests` images
one at a time and `--concurrency` at a time. With latency dominating, the ratio should
approach the concurrency; far below it means the client (or its event loop) is the
bottleneck. The ratio is printed last.

    python benchmarks/api_client_throughput.py
    python benchmarks/api_client_throughput.py --requests 1024 --latency-ms 50 --concurrency 64
"""

from __future__ import annotations

import argparse
import io
import sys
import time

from PIL import Image

from sail_pipeline.captioning import ApiCaptioner, CaptionRequest
from sail_pipeline.captioning.local_server import serve_canned
from sail_pipeline.schema import ApiParams


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=256, help="captions per run")
    parser.add_argument("--latency-ms", type=float, default=20.0,
                        help="the server's time per reply (stands in for generation)")
    parser.add_argument("--concurrency", type=int, default=32,
                        help="requests in flight in the concurrent run (compared with 1)")
    parser.add_argument("--image-px", type=int, default=64, help="side of the PNG sent")
    args = parser.parse_args()
    if args.requests <= 0 or args.concurrency <= 0:
        sys.exit("--requests and --concurrency must be positive")

    buffer = io.BytesIO()
    Image.new("RGB", (args.image_px, args.image_px), (200, 40, 40)).save(buffer, format="PNG")
    image = buffer.getvalue()
    requests = [CaptionRequest(f"img-{i}", image, f"Describe image {i} in detail.")
                for i in range(args.requests)]
    rates = {}
    with serve_canned(latency_s=args.latency_ms / 1000, record=False) as server:
        for concurrency in (1, args.concurrency):
            settings = ApiParams(base_url=server.base_url, model="canned", max_retries=0,
                                   concurrency=concurrency, timeout_s=30)
            captioner = ApiCaptioner(settings)
            captioner.run(requests[:4], progress=False)  # warm-up: imports, first connections
            server.max_in_flight = 0  # the server is idle between runs
            started = time.perf_counter()
            results = captioner.run(requests, progress=False)
            seconds = time.perf_counter() - started
            failed = sum(not r.ok for r in results)
            if failed:
                sys.exit(f"{failed}/{len(results)} requests failed at concurrency {concurrency}: "
                         f"{next(r.error for r in results if not r.ok)}")
            rates[concurrency] = len(requests) / seconds
            print(f"concurrency {concurrency:3d}: {rates[concurrency]:8.1f} requests/s "
                  f"({len(requests)} requests in {seconds:.2f}s, "
                  f"server latency {args.latency_ms:g} ms, max in flight "
                  f"{server.max_in_flight})", flush=True)
    print(f"concurrency {args.concurrency} vs 1: "
          f"{rates[args.concurrency] / rates[1]:.1f}x requests/s")


if __name__ == "__main__":
    main()
