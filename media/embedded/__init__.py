"""The embedded forwarder: aiortc terminates ICE/DTLS/SRTP/RTCP, RTP is forwarded as bytes."""
