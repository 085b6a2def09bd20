"""Operations on twins: replicate, exchange, fuse, compose - each recording its lineage."""

from ._common import OperationError
from .compose import compose
from .exchange import COMPONENTS, ExchangeResult, exchange
from .fuse import fuse_data, fuse_hierarchical, fuse_posteriors, gaussian_fusion
from .lineage import ATTR_KEY, Lineage, LineageError, attach_lineage, lineage_of
from .replicate import Scenario, replicate

__all__ = [
    "OperationError", "compose", "COMPONENTS", "ExchangeResult", "exchange", "fuse_data",
    "fuse_hierarchical", "fuse_posteriors", "gaussian_fusion", "ATTR_KEY", "Lineage",
    "LineageError", "attach_lineage", "lineage_of", "Scenario", "replicate",
]
