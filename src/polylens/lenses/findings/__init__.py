"""The findings lens: the seed's claims, one by one, each beside the measurement that tests it."""
