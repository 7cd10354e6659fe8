// a2qflow (build_flows/templates/layer_harness.cpp, built by build_flows/rtl_sim.py):
// AXI-stream harness for a FINN layer top.
// usage: sim IN.bin OUT.bin N_OUT IN_WORDS OUT_WORDS STALL_SEED
//   IN.bin: stream words, each IN_WORDS little-endian uint32 (least significant first)
//   writes N_OUT output words (OUT_WORDS uint32 each) to OUT.bin
//   STALL_SEED != 0: pseudo-random input gaps and output back-pressure (AXI rules kept)
// prints: cycles=<after reset> seconds=<loop time> extra=<outputs beyond N_OUT>
//         inputs_consumed=<input words accepted>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <type_traits>
#include <vector>
#include "verilated.h"
#include "Vtop.h"

template <typename T> struct Words { static constexpr size_t n = sizeof(T) <= 4 ? 1 : 2; };
template <std::size_t N> struct Words<VlWide<N>> { static constexpr size_t n = N; };
template <typename P> constexpr size_t words_of() { return Words<std::remove_reference_t<P>>::n; }

template <typename T> static void put(T& port, const uint32_t* w) {
    if constexpr (sizeof(T) <= 4) port = static_cast<T>(w[0]);
    else port = static_cast<T>(w[0]) | (static_cast<T>(w[1]) << 32);
}
template <std::size_t N> static void put(VlWide<N>& port, const uint32_t* w) {
    for (size_t i = 0; i < N; ++i) port[i] = w[i];
}
template <typename T> static void get(const T& port, uint32_t* w) {
    w[0] = static_cast<uint32_t>(port);
    if constexpr (sizeof(T) > 4) w[1] = static_cast<uint32_t>(static_cast<uint64_t>(port) >> 32);
}
template <std::size_t N> static void get(const VlWide<N>& port, uint32_t* w) {
    for (size_t i = 0; i < N; ++i) w[i] = port[i];
}

static uint32_t xorshift(uint32_t& s) { s ^= s << 13; s ^= s >> 17; s ^= s << 5; return s; }

int main(int argc, char** argv) {
    if (argc != 7) {
        std::fprintf(stderr, "usage: %s IN OUT N_OUT IN_WORDS OUT_WORDS STALL_SEED\n", argv[0]);
        return 2;
    }
    const size_t n_out = std::strtoull(argv[3], nullptr, 10);
    const size_t iw = words_of<decltype(Vtop::in0_V_TDATA)>(), ow = words_of<decltype(Vtop::out0_V_TDATA)>();
    if (iw != std::strtoull(argv[4], nullptr, 10) || ow != std::strtoull(argv[5], nullptr, 10)) {
        std::fprintf(stderr, "stream word size mismatch: ports have %zu/%zu uint32 words, files %s/%s\n",
                     iw, ow, argv[4], argv[5]);
        return 2;
    }
    uint32_t seed = std::strtoul(argv[6], nullptr, 10);
    const bool stall = seed != 0;

    std::vector<uint32_t> in;
    if (FILE* f = std::fopen(argv[1], "rb")) {
        uint32_t buf[4096]; size_t n;
        while ((n = std::fread(buf, 4, 4096, f)) > 0) in.insert(in.end(), buf, buf + n);
        std::fclose(f);
    } else { std::perror(argv[1]); return 2; }
    if (in.size() % iw) { std::fprintf(stderr, "input file size is not a multiple of %zu words\n", iw); return 2; }
    const size_t n_in = in.size() / iw;
    std::vector<uint32_t> out(n_out * ow);

    VerilatedContext ctx;
    Vtop top{&ctx};
    auto tick = [&]() { top.ap_clk = 0; top.eval(); top.ap_clk = 1; top.eval(); };
    top.ap_rst_n = 0; top.in0_V_TVALID = 0; top.out0_V_TREADY = 0;
    for (int i = 0; i < 16; ++i) tick();       // synchronous reset, active low
    top.ap_rst_n = 1;

    size_t i_in = 0, i_out = 0, extra = 0, idle = 0;
    uint64_t cycles = 0;
    bool valid = false;                         // AXI: TVALID stays up until accepted
    const auto t0 = std::chrono::steady_clock::now();
    while (i_out < n_out) {
        if (!valid && i_in < n_in) valid = !stall || (xorshift(seed) & 3);
        top.in0_V_TVALID = valid;
        if (valid) put(top.in0_V_TDATA, &in[i_in * iw]);
        top.out0_V_TREADY = !stall || (xorshift(seed) & 3) != 0;
        top.ap_clk = 0; top.eval();             // settle: handshakes as the rising edge sees them
        const bool in_fire = valid && top.in0_V_TREADY;
        const bool out_fire = top.out0_V_TVALID && top.out0_V_TREADY;
        if (out_fire) get(top.out0_V_TDATA, &out[i_out * ow]);
        top.ap_clk = 1; top.eval();
        ++cycles;
        if (in_fire) { ++i_in; valid = false; }
        if (out_fire) ++i_out;
        idle = (in_fire || out_fire) ? 0 : idle + 1;
        if (idle > IDLE_LIMIT) {
            std::fprintf(stderr, "timeout: no stream transfer for %d cycles (inputs %zu/%zu, outputs %zu/%zu)\n",
                         IDLE_LIMIT, i_in, n_in, i_out, n_out);
            return 3;
        }
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    top.in0_V_TVALID = 0; top.out0_V_TREADY = 1;   // anything beyond the expected count?
    for (int i = 0; i < 64; ++i) {
        top.ap_clk = 0; top.eval(); extra += top.out0_V_TVALID; top.ap_clk = 1; top.eval();
    }
    top.final();

    FILE* f = std::fopen(argv[2], "wb");
    if (!f || std::fwrite(out.data(), 4, out.size(), f) != out.size()) { std::perror(argv[2]); return 2; }
    std::fclose(f);
    std::printf("cycles=%llu seconds=%.6f extra=%zu inputs_consumed=%zu\n",
                static_cast<unsigned long long>(cycles), secs, extra, i_in);
    return 0;
}
