"""TensorBoard samples: completions as text and images with predicted (red) and detector (cyan) boxes."""

from __future__ import annotations

from lightning.pytorch.loggers import TensorBoardLogger

from tagfer.core.trace import parse_trace
from tagfer.core.visualize import draw_grounding
from tagfer.models.boxes import from_model_space


def tensorboard(logger) -> TensorBoardLogger | None:
    """The TensorBoard logger among the trainer's loggers (or None)."""
    loggers = logger if isinstance(logger, (list, tuple)) else [logger]
    return next((lg for lg in loggers if isinstance(lg, TensorBoardLogger)), None)


def grounding_image(completion: str, meta: dict, index: int, convention: str):
    """The sample image with the completion's boxes and the detector's boxes, both in image pixels."""
    size, input_size = meta["image_size"][index], meta["input_size"][index]

    def pixels(box):
        return from_model_space(box, size, input_size, convention)

    parsed = parse_trace(completion)
    predicted = [(",".join(step.aus) or step.region, pixels(step.box)) for step in parsed.steps if step.box is not None]
    detector = {au: pixels(box) for au, box in meta["au_box"][index].items() if meta["au_prob"][index].get(au, 0.0) >= 0.5}
    caption = f"pred: {parsed.answer or '-'} / true: {meta['label_name'][index]}"
    return draw_grounding(meta["image"][index], predicted, detector, caption=caption, scale=3)


def log_grounding_samples(logger, tag: str, step: int, completions: list[str], meta: dict, *, limit: int, convention: str) -> None:
    """Write up to ``limit`` completions (text) and grounding images under ``<tag>/samples``."""
    board = tensorboard(logger)
    if board is None or limit <= 0:
        return
    for i, text in enumerate(completions[:limit]):
        board.experiment.add_text(
            f"{tag}/completion_{i}", f"**{meta['id'][i]}** (true: {meta['label_name'][i]})\n\n    " + text.replace("\n", "\n    "), step
        )
        board.experiment.add_image(f"{tag}/grounding_{i}", grounding_image(text, meta, i, convention), step, dataformats="HWC")
