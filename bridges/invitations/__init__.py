"""Invitations (session × point) and the join credentials that let a point in."""
