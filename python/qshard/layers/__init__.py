"""tfjs layers models (model.json with format layers-model): weight-side transforms that keep the
topology (cross-layer equalization) and the mixed-precision search run in stock tfjs."""
