"""The media plane: WebRTC peers that carry the hall program and the floor, never transcoded."""
