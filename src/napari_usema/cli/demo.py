"""``usema demo``: napari with the nuclei sample and the USEMA widget docked, ready to click Segment."""

from __future__ import annotations

import argparse


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="open napari with the nuclei sample and the USEMA widget")
    p.add_argument("--sample", choices=["nuclei", "colonoscopy"], default="nuclei")
    p.add_argument("--model", help="checkpoint or bundled name to select (default: the sample's bundled model)")
    p.set_defaults(handler=run)


def open_demo(sample: str = "nuclei", model: str | None = None, show: bool = True):
    """Build the demo viewer; returns (viewer, widget). Importing napari happens only here."""
    try:
        import napari
    except ImportError:
        raise ValueError('the demo needs napari: pip install "napari-usema[all]"') from None
    from napari_usema._sample_data import colonoscopy_sample, nuclei_sample
    from napari_usema._widgets.main import UsemaWidget
    from napari_usema.io.bundled import available_models

    viewer = napari.Viewer(show=show, title="napari-usema demo")
    ((data, kwargs, _),) = (nuclei_sample if sample == "nuclei" else colonoscopy_sample)()
    viewer.add_image(data, **kwargs)
    widget = UsemaWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment, correct and fine-tune (USEMA)", area="right")
    widget.reset_choices()
    wanted = model or ("nuclei" if sample == "nuclei" else "polyps")
    if wanted in available_models():
        widget.segment.model.value = wanted
    elif model:
        from pathlib import Path

        widget.segment.use_checkpoint(Path(model))
    return viewer, widget


def run(args: argparse.Namespace) -> int:
    import napari

    open_demo(args.sample, args.model)
    napari.run()
    return 0
