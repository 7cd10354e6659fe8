// a2qflow (build_flows/templates/stitched_harness.cpp, built by build_flows/stitch.py):
// AXI-stream harness for the stitched top of a whole FINN accelerator.
// usage: sim IN.bin OUT.bin TIMES.bin N_IMAGES IN_WORDS_PER_IMAGE OUT_WORDS_PER_IMAGE STALL_SEED
//   IN.bin   N_IMAGES*IN_WORDS_PER_IMAGE stream words, each ceil(in width/32) little-endian
//            uint32 (least significant first)
//   OUT.bin  N_IMAGES*OUT_WORDS_PER_IMAGE output words, ceil(out width/32) uint32 each
//   TIMES.bin per image: uint64 cycle of its first input word accepted, uint64 cycle of its
//            last output word taken (cycles counted from the end of reset, first cycle = 1)
//   STALL_SEED != 0: pseudo-random input gaps (1/4 of cycles) and output back-pressure
//            (1/4 of cycles); AXI rules kept (TVALID held with stable data until accepted)
// Compile-time: -DA2Q_N_FIFOS=<n> when the top has fifo_count/fifo_maxcount monitor ports.
// prints: cycles=<> seconds=<> extra=<> inputs_consumed=<>, then "fifo <i> maxcount <v>" lines
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <type_traits>
#include <vector>
#include "verilated.h"
#include "Vtop.h"

#ifndef IDLE_LIMIT
#define IDLE_LIMIT 200000
#endif

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
template <typename T> static uint32_t word32(const T& port, size_t i) {
    if constexpr (sizeof(T) <= 4) return static_cast<uint32_t>(port);
    else return static_cast<uint32_t>(static_cast<uint64_t>(port) >> (32 * i));
}
template <std::size_t N> static uint32_t word32(const VlWide<N>& port, size_t i) { return port[i]; }

static uint32_t xorshift(uint32_t& s) { s ^= s << 13; s ^= s >> 17; s ^= s << 5; return s; }

int main(int argc, char** argv) {
    if (argc != 8) {
        std::fprintf(stderr, "usage: %s IN OUT TIMES N_IMAGES IN_WPI OUT_WPI STALL_SEED\n", argv[0]);
        return 2;
    }
    const size_t n_img = std::strtoull(argv[4], nullptr, 10);
    const size_t in_wpi = std::strtoull(argv[5], nullptr, 10), out_wpi = std::strtoull(argv[6], nullptr, 10);
    uint32_t seed = std::strtoul(argv[7], nullptr, 10);
    const bool stall = seed != 0;
    const size_t iw = words_of<decltype(Vtop::in0_V_TDATA)>(), ow = words_of<decltype(Vtop::out0_V_TDATA)>();

    std::vector<uint32_t> in;
    if (FILE* f = std::fopen(argv[1], "rb")) {
        uint32_t buf[4096]; size_t n;
        while ((n = std::fread(buf, 4, 4096, f)) > 0) in.insert(in.end(), buf, buf + n);
        std::fclose(f);
    } else { std::perror(argv[1]); return 2; }
    const size_t n_in = n_img * in_wpi, n_out = n_img * out_wpi;
    if (in.size() != n_in * iw) {
        std::fprintf(stderr, "input file has %zu uint32, expected %zu\n", in.size(), n_in * iw);
        return 2;
    }
    std::vector<uint32_t> out(n_out * ow);
    std::vector<uint64_t> times(2 * n_img, 0);

    VerilatedContext ctx;
    Vtop top{&ctx};
    auto tick = [&]() { top.ap_clk = 0; top.eval(); top.ap_clk = 1; top.eval(); };
    top.ap_rst_n = 0; top.in0_V_TVALID = 0; top.out0_V_TREADY = 0;
    for (int i = 0; i < 16; ++i) tick();       // synchronous reset, active low
    top.ap_rst_n = 1;

    size_t i_in = 0, i_out = 0, extra = 0, idle = 0;
    uint64_t cycles = 0;
    bool valid = false;
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
        if (in_fire) {
            if (i_in % in_wpi == 0) times[2 * (i_in / in_wpi)] = cycles;
            ++i_in; valid = false;
        }
        if (out_fire) {
            if ((i_out + 1) % out_wpi == 0) times[2 * (i_out / out_wpi) + 1] = cycles;
            ++i_out;
        }
        idle = (in_fire || out_fire) ? 0 : idle + 1;
        if (idle > IDLE_LIMIT) {
            std::fprintf(stderr, "timeout: no stream transfer for %d cycles (inputs %zu/%zu, outputs %zu/%zu)\n",
                         IDLE_LIMIT, i_in, n_in, i_out, n_out);
#ifdef A2Q_N_FIFOS
            for (size_t i = 0; i < A2Q_N_FIFOS; ++i)   // where the data stopped
                std::printf("fifo %zu count %u\n", i, word32(top.fifo_count, i));
#endif
            return 3;
        }
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    top.in0_V_TVALID = 0; top.out0_V_TREADY = 1;   // anything beyond the expected count?
    for (int i = 0; i < 256; ++i) {
        top.ap_clk = 0; top.eval(); extra += top.out0_V_TVALID; top.ap_clk = 1; top.eval();
    }
    FILE* f = std::fopen(argv[2], "wb");
    if (!f || std::fwrite(out.data(), 4, out.size(), f) != out.size()) { std::perror(argv[2]); return 2; }
    std::fclose(f);
    f = std::fopen(argv[3], "wb");
    if (!f || std::fwrite(times.data(), 8, times.size(), f) != times.size()) { std::perror(argv[3]); return 2; }
    std::fclose(f);
    std::printf("cycles=%llu seconds=%.6f extra=%zu inputs_consumed=%zu\n",
                static_cast<unsigned long long>(cycles), secs, extra, i_in);
#ifdef A2Q_N_FIFOS
    for (size_t i = 0; i < A2Q_N_FIFOS; ++i)
        std::printf("fifo %zu maxcount %u\n", i, word32(top.fifo_maxcount, i));
#endif
    top.final();
    return 0;
}
