"""Curation: scenario mining, versioned datasets, and the clip contract they share."""
