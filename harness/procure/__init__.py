"""Procurement: one scenario on several machines side by side, $ per million tokens, and the
projected time and cost of training a large model on each (`harness procure`)."""

from harness.procure.compare import ResultsSource, Row, load_sources, side_by_side
from harness.procure.prices import LoadedPrices, PriceBook, load_prices, price_for
from harness.procure.projection import TARGETS, Basis, Projection, Target, project

__all__ = ["TARGETS", "Basis", "LoadedPrices", "PriceBook", "Projection", "ResultsSource", "Row",
           "Target", "load_prices", "load_sources", "price_for", "project", "side_by_side"]
