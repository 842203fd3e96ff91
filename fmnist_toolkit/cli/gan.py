"""``fmt gan``: generative adversarial networks (commands arrive with their issue)."""

import typer

app = typer.Typer(
    rich_markup_mode="markdown",
    help="GANs (the report's MLP and a convolutional one) and sampling. "
    "No commands yet: `fmt gan train`, `sample` and `eval` are planned.",
)
