import time, struct, socket, os
from aiortc import clock
from pylibsrtp import Policy, Session
N=20000
def bench(name, f):
    t=time.thread_time()
    for _ in range(N): f()
    print(f"{name}: {1e6*(time.thread_time()-t)/N:.2f} us")
bench("clock.current_ntp_time", clock.current_ntp_time)
payload=os.urandom(1150); mid=bytes([0x10])+b"1"
seq=[0]
def build():
    seq[0]=(seq[0]+1)&0xFFFF
    ast=(clock.current_ntp_time()>>14)&0xFFFFFF
    e=mid+bytes([0x32])+ast.to_bytes(3,"big"); e+=b"\0"*(-len(e)%4)
    return struct.pack("!BBHLL",0x90,97,seq[0],1234,5678)+b"\xbe\xde"+struct.pack("!H",len(e)//4)+e+payload
bench("build header+copy", build)
key=os.urandom(30)
p=Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80); p.allow_repeat_tx=True; p.window_size=1024
s=Session(p); pkts=[build() for _ in range(N)]; it=iter(pkts)
bench("srtp protect AES128_CM_SHA1_80 1.2kB", lambda: s.protect(next(it)))
a=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); a.bind(("127.0.0.1",0)); b=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); b.bind(("127.0.0.1",0)); b.setblocking(False)
addr=b.getsockname(); data=pkts[0]
def snd():
    a.sendto(data, addr)
    try: b.recv(2000)
    except BlockingIOError: pass
bench("loopback sendto (+recv drain)", snd)
