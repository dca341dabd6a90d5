"""The media plane behind one interface: embedded aiortc forwarding and external SFU backends."""
