import os

# One BLAS thread: a query's matrix-vector products are short and memory-bound, and on a few shared
# cores a second BLAS thread mostly waits for a core (the latency benchmark measures the difference).
# Set before numpy loads; an explicit OPENBLAS_NUM_THREADS in the environment wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import sys

if sys.argv[1:2] == ["encode-worker"]:
    from matchmaking.encoder_process import main as encode_worker

    encode_worker(sys.argv[2:])
else:
    from matchmaking.app import main

    main()
