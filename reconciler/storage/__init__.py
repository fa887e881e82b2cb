"""Storage backends behind one protocol (see ``base.Storage``)."""
