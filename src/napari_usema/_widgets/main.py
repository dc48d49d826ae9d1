"""The USEMA dock widget: Segment, Post-process, Correct, Fine-tune and Attention sections sharing one model object."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QScrollArea, QTabWidget, QVBoxLayout, QWidget

from napari_usema._widgets.attention import AttentionExplorer
from napari_usema._widgets.correct import CorrectSection
from napari_usema._widgets.finetune import FinetuneSection
from napari_usema._widgets.postprocess import PostprocessSection
from napari_usema._widgets.segment import SegmentSection


class UsemaWidget(QWidget):
    """One dock widget, five tabs. The other sections get the Segment section (and its model) explicitly."""

    def __init__(self, napari_viewer: Any, output_folder: Path | None = None) -> None:
        super().__init__()
        self._shown = False
        self.viewer = napari_viewer
        self.segment = SegmentSection(napari_viewer)
        self.postprocess = PostprocessSection(self.segment)
        self.correct = CorrectSection(self.segment)
        self.finetune = FinetuneSection(self.segment, output_folder)
        self.attention = AttentionExplorer(napari_viewer, self.segment)
        self.tabs = QTabWidget()
        sections = (
            ("Segment", self.segment),
            ("Post-process", self.postprocess),
            ("Correct", self.correct),
            ("Fine-tune", self.finetune),
            ("Attention", self.attention),
        )
        for title, section in sections:
            scroll = QScrollArea()
            scroll.setWidgetResizable(True)
            scroll.setWidget(section.native)
            # As wide as the section needs: napari then widens the dock rather than squeeze it into a
            # sideways scroll (at 853 px of window every tab scrolled sideways).
            scroll.setMinimumWidth(section.native.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width())
            self.tabs.addTab(scroll, title)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)
        self.setMaximumWidth(460)

    def showEvent(self, event: Any) -> None:  # noqa: N802 (Qt's name)
        """The first time the dock opens it narrows the canvas; frame the images again once it has."""
        super().showEvent(event)
        if not self._shown:
            self._shown = True
            QTimer.singleShot(0, self._frame_images)

    def _frame_images(self) -> None:
        if len(self.viewer.layers):
            self.viewer.reset_view()

    def reset_choices(self, *_: Any) -> None:
        """napari calls this when layers change: refresh every layer drop-down."""
        for section in (self.segment, self.postprocess, self.correct, self.finetune, self.attention):
            section.reset_choices()
