"""Traces in and out: the Azure Functions 2019 day-file layout (read, validate, join days, write), the
seeded generator the tests and the demo use, and the windows forecasters train and predict on."""
