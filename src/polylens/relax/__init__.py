"""Sound linear relaxations of activations over pre-activation intervals.

:mod:`polylens.relax.lines` holds the primitive (:func:`tightest_intercept`) and the one-line-per-side
"pair" relaxation used by backward bound propagation; :mod:`polylens.relax.envelopes` holds the one
envelope value every analysis takes (:class:`Hull` or :class:`Pair`) and builds the :class:`Cuts` the
LP polytope is assembled from. Everything is derived from the declared facts of
:mod:`polylens.nn.activations`, never from the activation's kind. See docs/envelopes.md.
"""

from polylens.relax.envelopes import (MAX_CUTS, Cuts, Envelope, EnvelopeMode, Hull, Pair, build_envelope,
                                      check_envelope, hull_area_ratio, hull_area_ratios)
from polylens.relax.lines import Lines, Side, image_bounds, pair_lines, slope_range, tightest_intercept

__all__ = ["MAX_CUTS", "Cuts", "Envelope", "EnvelopeMode", "Hull", "Lines", "Pair", "Side", "build_envelope",
           "check_envelope", "hull_area_ratio", "hull_area_ratios", "image_bounds", "pair_lines", "slope_range",
           "tightest_intercept"]
