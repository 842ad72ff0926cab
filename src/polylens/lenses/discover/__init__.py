"""Discovery: constraint signatures, prototypes, counterfactuals, neurons and their names, traces."""
