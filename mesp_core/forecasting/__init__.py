"""What a forecast is made of, and all the operator loads: K-Shape and the clustering of daily
patterns, the router, the experts, the trained model object and its versioned artifact."""
