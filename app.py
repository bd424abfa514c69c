"""AlexNet Lab: `streamlit run app.py`.

This is the server's entry, a Streamlit ``st.App``: before the server takes its
first connection it imports PyTorch and the lab once (about 2 s on two cores),
so no visitor's first page waits for them. The dashboard itself, the frame
every page shares, is ``dashboard.py``.
"""

import asyncio
import logging
import time
from contextlib import asynccontextmanager

import streamlit as st
from starlette.middleware import Middleware

import lab_server

log = logging.getLogger("alexnet_lab")


def warm_up() -> None:
    """Import what every page needs and fill the default view's caches, in the server
    process, before anyone asks."""
    started = time.perf_counter()
    import plotly.graph_objects  # noqa: F401  (the charts)
    import torch

    import lab_ui  # alexnet_core, torchinfo, pandas

    # The first convolution on a CPU sets up oneDNN; do it here, not in a page.
    torch.nn.functional.conv2d(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 3, 3))
    # The first optimizer imports torch._dynamo (1.2 s): not in the Train page's first estimate.
    torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    lab_ui.warm_caches()
    log.warning("AlexNet Lab: PyTorch and the lab imported and warmed in %.1f s", time.perf_counter() - started)


@asynccontextmanager
async def lifespan(app):
    # The listening socket is bound by now and takes no connection until this returns.
    log.warning("AlexNet Lab: TCP_NODELAY on %d listening socket(s)", lab_server.nodelay_on_listening_sockets())
    await asyncio.to_thread(warm_up)
    # Streamlit collects garbage after every script run: keep the imports out of it.
    log.warning("AlexNet Lab: %d objects of the warm-up frozen out of the collector", lab_server.freeze_startup_heap())
    yield


# PageHtml: a page opened at its own address connects at the first attempt;
# LiveApi: a page watching a run polls its progress (lab_server.py).
app = st.App(
    "dashboard.py", lifespan=lifespan, middleware=[Middleware(lab_server.PageHtml), Middleware(lab_server.LiveApi)]
)
