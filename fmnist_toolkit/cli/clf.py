"""``fmt clf``: classifiers on the autoencoder's encoder (commands arrive with their issue)."""

import typer

app = typer.Typer(
    rich_markup_mode="markdown",
    help="Classifiers on a trained encoder, frozen or fine-tuned. "
    "No commands yet: `fmt clf finetune`, `eval` and `predict` are planned.",
)
