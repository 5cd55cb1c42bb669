"""Storage back-ends behind one small driver interface."""
