"""Networks only (``nn.Module`` subclasses), one family per file, found through the registry."""

from fmnist_toolkit.models._registry import architectures, build_model, create_model, register

__all__ = ["architectures", "build_model", "create_model", "register"]
