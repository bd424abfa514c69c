"""AlexNet Lab: `streamlit run app.py`.

The server's entry, a Streamlit ``st.App`` running ``ui/frame.py``: before the
server takes its first connection it imports PyTorch and the lab once (a few
seconds on two cores), so no visitor's first page waits for them.
"""

import asyncio
import gc
import logging
import time
from contextlib import asynccontextmanager

import streamlit as st

log = logging.getLogger("alexnet_lab")


def warm_up() -> None:
    """Import what every page needs and fill the default view's caches, in the server
    process, before anyone asks."""
    started = time.perf_counter()
    import plotly.graph_objects as go
    import torch

    from ui import cached  # alexnet_core, torchinfo, pandas

    # The first convolution on a CPU sets up oneDNN; do it here, not in a page.
    torch.nn.functional.conv2d(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 3, 3))
    # The first optimizer imports torch._dynamo: not in the Train page's first estimate.
    torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    # plotly.py loads its validators on a figure's first use of each trace type.
    go.Figure([go.Scatter(x=[0], y=[0]), go.Bar(x=[1], y=["a"]), go.Heatmap(z=[[1]])]).to_json()
    try:
        cached.warm_caches()
    except Exception as exc:  # a warm-up is a head start, never a reason for the server not to start
        log.warning("AlexNet Lab: the default view could not be prepared at start-up (%s: %s); "
                    "its page will say why", type(exc).__name__, exc)
    log.warning("AlexNet Lab: PyTorch and the lab imported and warmed in %.1f s", time.perf_counter() - started)


@asynccontextmanager
async def lifespan(app):
    await asyncio.to_thread(warm_up)
    # Keep the start-up imports out of every later collection (runner.postScriptGC is off,
    # Python's own collector still runs): freeze what the warm-up left.
    gc.collect()
    gc.freeze()
    log.warning("AlexNet Lab: %d objects of the warm-up frozen out of the collector", gc.get_freeze_count())
    yield


app = st.App("ui/frame.py", lifespan=lifespan)
