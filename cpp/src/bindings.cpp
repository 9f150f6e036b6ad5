// The only file that knows about Python. It checks arguments, releases the GIL and calls ops;
// it does no arithmetic of its own.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <string>
#include <system_error>
#include <tuple>
#include <vector>

#include "qshard/dispatch.hpp"
#include "qshard/file_tensor.hpp"
#include "qshard/ops.hpp"
#include "qshard/pack.hpp"
#include "qshard/parallel.hpp"

namespace py = pybind11;
using namespace qshard;

namespace {

const char* dtype_name(const py::array& a) {
    static thread_local std::string name;
    name = py::str(a.dtype()).cast<std::string>();
    return name.c_str();
}

// A C-contiguous array of exactly T (native byte order); otherwise TypeError naming the argument.
template <class T>
void require(const py::array& a, const char* fn, const char* arg, const char* expected) {
    if (!a.dtype().is(py::dtype::of<T>()))
        throw py::type_error(std::string(fn) + ": " + arg + " must be a " + expected + " array, got " + dtype_name(a));
    if (!(a.flags() & py::array::c_style))
        throw py::type_error(std::string(fn) + ": " + arg + " must be C-contiguous (use numpy.ascontiguousarray)");
    // Kernels read through typed pointers: a view at an odd byte offset would be undefined behaviour.
    if (reinterpret_cast<uintptr_t>(a.data()) % alignof(T) != 0)
        throw py::type_error(std::string(fn) + ": " + arg + " is not aligned for its dtype (copy it first)");
}

template <class T>
T* writable(py::array& a, const char* fn, const char* arg, const char* expected, size_t n) {
    require<T>(a, fn, arg, expected);
    if (!a.writeable()) throw py::value_error(std::string(fn) + ": " + arg + " is read-only");
    if (static_cast<size_t>(a.size()) != n)
        throw py::value_error(std::string(fn) + ": " + arg + " has " + std::to_string(a.size()) +
                              " elements, expected " + std::to_string(n));
    return static_cast<T*>(a.mutable_data());
}

py::tuple params_tuple(const AffineParams& p) { return py::make_tuple(p.min, p.scale, p.max); }

py::tuple quantize_py(const py::array& x, py::array& out, uint32_t qmax, const std::string& isa, unsigned threads) {
    require<float>(x, "quantize", "x", "float32");
    const size_t n = static_cast<size_t>(x.size());
    void* dst = qmax == 255 ? static_cast<void*>(writable<uint8_t>(out, "quantize", "out", "uint8", n))
                            : static_cast<void*>(writable<uint16_t>(out, "quantize", "out", "uint16", n));
    const Kernels& k = kernels_for(isa);
    const float* src = static_cast<const float*>(x.data());
    AffineParams p;
    {
        py::gil_scoped_release release;
        p = quantize(k, src, n, qmax, dst, threads);
    }
    return params_tuple(p);
}

void quantize_with_py(const py::array& x, py::array& out, double min, double scale, double max, uint32_t qmax,
                      const std::string& isa, unsigned threads) {
    require<float>(x, "quantize_with", "x", "float32");
    const size_t n = static_cast<size_t>(x.size());
    void* dst = qmax == 255 ? static_cast<void*>(writable<uint8_t>(out, "quantize_with", "out", "uint8", n))
                            : static_cast<void*>(writable<uint16_t>(out, "quantize_with", "out", "uint16", n));
    const Kernels& k = kernels_for(isa);
    AffineParams p;
    p.min = min;
    p.scale = scale;
    p.max = max;
    p.qmax = qmax;
    const float* src = static_cast<const float*>(x.data());
    py::gil_scoped_release release;
    quantize_with(k, src, n, p, dst, threads);
}

void dequantize_py(const py::array& q, py::array& out, double min, double scale, const std::string& isa,
                   unsigned threads, bool half_up) {
    unsigned code_bytes;
    if (q.dtype().is(py::dtype::of<uint8_t>()))
        code_bytes = 1;
    else if (q.dtype().is(py::dtype::of<uint16_t>()))
        code_bytes = 2;
    else
        throw py::type_error(std::string("dequantize: codes must be a uint8 or uint16 array, got ") + dtype_name(q));
    if (!(q.flags() & py::array::c_style)) throw py::type_error("dequantize: codes must be C-contiguous");
    if (reinterpret_cast<uintptr_t>(q.data()) % code_bytes != 0)
        throw py::type_error("dequantize: codes are not aligned for their dtype (copy them first)");
    const size_t n = static_cast<size_t>(q.size());
    bool to_int32;
    void* dst;
    if (out.dtype().is(py::dtype::of<int32_t>())) {
        to_int32 = true;
        dst = writable<int32_t>(out, "dequantize", "out", "int32", n);
    } else {
        to_int32 = false;
        dst = writable<float>(out, "dequantize", "out", "float32 (or int32)", n);
    }
    const Kernels& k = kernels_for(isa);
    const void* src = q.data();
    py::gil_scoped_release release;
    dequantize(k, src, n, code_bytes, min, scale, to_int32, dst, threads, half_up);
}

void f16_from_f32_py(const py::array& x, py::array& out, const std::string& isa, unsigned threads) {
    require<float>(x, "f16_from_f32", "x", "float32");
    const size_t n = static_cast<size_t>(x.size());
    uint16_t* dst = writable<uint16_t>(out, "f16_from_f32", "out", "uint16 (float16 bits)", n);
    const Kernels& k = kernels_for(isa);
    const float* src = static_cast<const float*>(x.data());
    py::gil_scoped_release release;
    f16_from_f32(k, src, n, dst, threads);
}

void f32_from_f16_py(const py::array& h, py::array& out, const std::string& isa, unsigned threads) {
    require<uint16_t>(h, "f32_from_f16", "h", "uint16 (float16 bits)");
    const size_t n = static_cast<size_t>(h.size());
    float* dst = writable<float>(out, "f32_from_f16", "out", "float32", n);
    const Kernels& k = kernels_for(isa);
    const uint16_t* src = static_cast<const uint16_t*>(h.data());
    py::gil_scoped_release release;
    f32_from_f16(k, src, n, dst, threads);
}

// (min, max, has_nan) as minmax reports it; (None, None, False) for no values at all.
py::tuple range_tuple(const MinMaxKeys& keys) {
    if (keys.lo > keys.hi) return py::make_tuple(py::none(), py::none(), false);
    const bool has_nan = keys.lo < kKeyMinusInf || keys.hi > kKeyPlusInf;
    return py::make_tuple(key_float(keys.lo), key_float(keys.hi), has_nan);
}

py::tuple minmax_py(const py::array& x, const std::string& isa, unsigned threads) {
    require<float>(x, "minmax", "x", "float32");
    const Kernels& k = kernels_for(isa);
    const float* src = static_cast<const float*>(x.data());
    const size_t n = static_cast<size_t>(x.size());
    MinMaxKeys keys;
    {
        py::gil_scoped_release release;
        keys = minmax(k, src, n, threads);
    }
    return range_tuple(keys);
}

// Ceiling kernels for the benchmark: raw buffers of uint32 words in, bytes out.
uint32_t ceiling_read_py(const py::array& in, const std::string& isa, unsigned threads) {
    require<uint32_t>(in, "ceiling_read", "in", "uint32");
    const Kernels& k = kernels_for(isa);
    const void* src = in.data();
    const size_t n = static_cast<size_t>(in.size());
    py::gil_scoped_release release;
    return ceiling_read(k, src, n, threads);
}

void ceiling_narrow_py(const py::array& in, py::array& out, const std::string& isa, unsigned threads) {
    require<uint32_t>(in, "ceiling_narrow", "in", "uint32");
    const size_t n = static_cast<size_t>(in.size());
    const unsigned out_bytes = static_cast<unsigned>(out.itemsize());
    if (out_bytes != 1 && out_bytes != 2) throw py::type_error("ceiling_narrow: out must be uint8 or uint16");
    if (!(out.flags() & py::array::c_style) || static_cast<size_t>(out.size()) != n || !out.writeable())
        throw py::value_error("ceiling_narrow: out must be a writable C-contiguous array as long as in");
    const Kernels& k = kernels_for(isa);
    const void* src = in.data();
    void* dst = out.mutable_data();
    py::gil_scoped_release release;
    ceiling_narrow(k, src, n, out_bytes, dst, threads);
}

void ceiling_widen_py(const py::array& in, py::array& out, const std::string& isa, unsigned threads) {
    const unsigned in_bytes = static_cast<unsigned>(in.itemsize());
    if (in_bytes != 1 && in_bytes != 2) throw py::type_error("ceiling_widen: in must be uint8 or uint16");
    if (!(in.flags() & py::array::c_style)) throw py::type_error("ceiling_widen: in must be C-contiguous");
    const size_t n = static_cast<size_t>(in.size());
    uint32_t* dst = writable<uint32_t>(out, "ceiling_widen", "out", "uint32", n);
    const Kernels& k = kernels_for(isa);
    const void* src = in.data();
    py::gil_scoped_release release;
    ceiling_widen(k, src, n, in_bytes, dst, threads);
}

void writer_append(ShardWriter& w, const py::array& data) {
    if (!(data.flags() & py::array::c_style)) throw py::type_error("ShardWriter.append: data must be C-contiguous");
    const void* src = data.data();
    const size_t bytes = static_cast<size_t>(data.nbytes());
    py::gil_scoped_release release;
    w.append(src, bytes);
}

void writer_append_quantized(ShardWriter& w, const py::array& x, double min, double scale, double max, uint32_t qmax,
                             bool clip, const std::string& isa, unsigned threads) {
    require<float>(x, "ShardWriter.append_quantized", "x", "float32");
    if (qmax != 255 && qmax != 65535) throw py::value_error("ShardWriter.append_quantized: qmax must be 255 or 65535");
    AffineParams p;
    p.min = min;
    p.scale = scale;
    p.max = max;
    p.qmax = qmax;
    p.clip = clip;
    const Kernels& k = kernels_for(isa);
    const float* src = static_cast<const float*>(x.data());
    const size_t n = static_cast<size_t>(x.size());
    py::gil_scoped_release release;
    w.append_quantized(k, src, n, p, threads);
}

void writer_append_float16(ShardWriter& w, const py::array& x, const std::string& isa, unsigned threads) {
    require<float>(x, "ShardWriter.append_float16", "x", "float32");
    const Kernels& k = kernels_for(isa);
    const float* src = static_cast<const float*>(x.data());
    const size_t n = static_cast<size_t>(x.size());
    py::gil_scoped_release release;
    w.append_float16(k, src, n, threads);
}

using Pieces = std::vector<std::tuple<std::string, uint64_t, uint64_t>>;

StoredTensor stored_tensor(const char* fn, const Pieces& pieces, const std::string& stored, uint64_t count,
                           double codes_min, double codes_scale) {
    static const std::pair<const char*, Stored> forms[] = {{"float32", Stored::f32}, {"float16", Stored::f16},
                                                           {"bfloat16", Stored::bf16}, {"float64", Stored::f64},
                                                           {"uint8", Stored::u8}, {"uint16", Stored::u16}};
    StoredTensor t;
    bool known = false;
    for (const auto& [name, form] : forms)
        if (stored == name) t.form = form, known = true;
    if (!known)
        throw py::value_error(std::string(fn) + ": stored must be float32, float16, bfloat16, float64, uint8 or "
                              "uint16, got '" + stored + "'");
    for (const auto& [path, offset, bytes] : pieces) t.pieces.push_back({path, offset, bytes});
    t.count = count;
    t.codes_min = codes_min;
    t.codes_scale = codes_scale;
    return t;
}

py::tuple minmax_file_py(const Pieces& pieces, const std::string& stored, uint64_t count, double codes_min,
                         double codes_scale, const std::string& isa, unsigned threads) {
    const StoredTensor t = stored_tensor("minmax_file", pieces, stored, count, codes_min, codes_scale);
    const Kernels& k = kernels_for(isa);
    MinMaxKeys keys;
    {
        py::gil_scoped_release release;
        keys = minmax_file(k, t, threads);
    }
    return range_tuple(keys);
}

py::tuple writer_append_file(ShardWriter& w, const Pieces& pieces, const std::string& stored, uint64_t count,
                             const std::string& target, double codes_min, double codes_scale, bool refuse_nan,
                             const std::string& isa, unsigned threads) {
    const StoredTensor t = stored_tensor("ShardWriter.append_file", pieces, stored, count, codes_min, codes_scale);
    Target to;
    if (target == "uint8")
        to = Target::u8;
    else if (target == "uint16")
        to = Target::u16;
    else if (target == "float16")
        to = Target::f16;
    else
        throw py::value_error("ShardWriter.append_file: target must be uint8, uint16 or float16, got '" + target + "'");
    const Kernels& k = kernels_for(isa);
    FileQuantized result;
    {
        py::gil_scoped_release release;
        result = append_file(w, k, t, to, refuse_nan, threads);
    }
    return py::make_tuple(result.written, range_tuple(result.keys), result.params.min, result.params.scale);
}

void writer_append_file_bytes(ShardWriter& w, const Pieces& pieces) {
    std::vector<FilePiece> where;
    for (const auto& [path, offset, bytes] : pieces) where.push_back({path, offset, bytes});
    py::gil_scoped_release release;
    append_file_bytes(w, where);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    // std::system_error (a failed open/write) becomes OSError with errno and the file name.
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const std::system_error& e) {
            const int code = e.code().value();
            std::string what = e.what();  // "<path>: <strerror>"
            const std::string path = what.substr(0, what.rfind(": "));
            py::object error = py::module_::import("builtins").attr("OSError")(code, std::strerror(code), path);
            PyErr_SetObject(PyExc_OSError, error.ptr());
        }
    });
    py::register_exception<ChangedFile>(m, "ChangedFileError", PyExc_OSError);
    m.doc() = "qshard's C++ kernels (use the qshard package, not this module, directly)";
#ifdef QSHARD_VERSION
    m.attr("__version__") = QSHARD_VERSION;  // set by the build (scikit-build-core's project version)
#endif
    // std::invalid_argument from ops becomes ValueError (pybind11's default translation).
#define QSHARD_ISA_THREADS py::arg("isa") = std::string(), py::arg("threads") = 0u

    m.def("isa", [] { return std::string(active_kernels().name); }, "Name of the instruction set used by default.");
    m.def("available_isas", &available_isas, "Instruction sets this CPU can run, 'serial' first.");
    m.def("set_isa", &set_active_isa, py::arg("name"),
          "Make `name` the default instruction set for this process ('' = the best available).");
    m.def("get_num_threads", &default_threads, "Threads a call uses when it asks for 0.");
    m.def("set_num_threads", &set_default_threads, py::arg("threads"), "Set the default thread count (0 = automatic).");
    m.def("get_read_buffer", &read_buffer_bytes,
          "Bytes of a file-stored tensor append_file reads once and keeps for its second pass.");
    m.def("set_read_buffer", &set_read_buffer_bytes, py::arg("bytes"),
          "Set the read buffer for later append_file calls (0: every tensor is read twice).");
    m.def("affine_params", [](double lo, double hi, uint32_t qmax) { return params_tuple(affine_params(lo, hi, qmax)); },
          py::arg("lo"), py::arg("hi"), py::arg("qmax"), "tensorflowjs's (min, scale, max) for a range.");
    m.def("minmax", &minmax_py, py::arg("x"), QSHARD_ISA_THREADS, "(min, max, has_nan) of a float32 array.");
    m.def("minmax_file", &minmax_file_py, py::arg("pieces"), py::arg("stored"), py::arg("count"),
          py::arg("codes_min") = 0.0, py::arg("codes_scale") = 1.0, QSHARD_ISA_THREADS,
          "(min, max, has_nan) of a tensor stored in files (see ShardWriter.append_file).");
    m.def("quantize_u8", [](const py::array& x, py::array& out, const std::string& i, unsigned t) {
              return quantize_py(x, out, 255, i, t); },
          py::arg("x"), py::arg("out"), QSHARD_ISA_THREADS, "Quantize float32 to uint8 codes; returns (min, scale, max).");
    m.def("quantize_u16", [](const py::array& x, py::array& out, const std::string& i, unsigned t) {
              return quantize_py(x, out, 65535, i, t); },
          py::arg("x"), py::arg("out"), QSHARD_ISA_THREADS, "Quantize float32 to uint16 codes; returns (min, scale, max).");
    m.def("quantize_with", &quantize_with_py, py::arg("x"), py::arg("out"), py::arg("min"), py::arg("scale"),
          py::arg("max"), py::arg("qmax"), QSHARD_ISA_THREADS, "Quantize with given parameters.");
    m.def("dequantize", &dequantize_py, py::arg("codes"), py::arg("out"), py::arg("min"), py::arg("scale"), QSHARD_ISA_THREADS,
          py::arg("half_up") = false,
          "codes * scale + min into a float32 (or rounded into an int32) array.");
    m.def("f16_from_f32", &f16_from_f32_py, py::arg("x"), py::arg("out"), QSHARD_ISA_THREADS);
    m.def("f32_from_f16", &f32_from_f16_py, py::arg("h"), py::arg("out"), QSHARD_ISA_THREADS);
    m.def("ceiling_read", &ceiling_read_py, py::arg("words"), QSHARD_ISA_THREADS);
    m.def("ceiling_narrow", &ceiling_narrow_py, py::arg("words"), py::arg("out"), QSHARD_ISA_THREADS);
    py::class_<ShardWriter>(m, "ShardWriter", "Writes one weight group's shards, one buffer of memory at most.")
        .def(py::init<std::string, unsigned, uint64_t, uint64_t>(), py::arg("folder"), py::arg("group_number"),
             py::arg("total_bytes"), py::arg("shard_size"))
        .def_property_readonly("names", &ShardWriter::names)
        .def_property_readonly("written", &ShardWriter::written)
        .def_property_readonly("total", &ShardWriter::total)
        .def("append", &writer_append, py::arg("data"))
        .def("append_quantized", &writer_append_quantized, py::arg("x"), py::arg("min"), py::arg("scale"),
             py::arg("max"), py::arg("qmax"), py::arg("clip") = true, QSHARD_ISA_THREADS)
        .def("append_float16", &writer_append_float16, py::arg("x"), QSHARD_ISA_THREADS)
        .def("append_file", &writer_append_file, py::arg("pieces"), py::arg("stored"), py::arg("count"),
             py::arg("target"), py::arg("codes_min") = 0.0, py::arg("codes_scale") = 1.0, py::arg("refuse_nan") = true,
             QSHARD_ISA_THREADS,
             "Quantize a tensor stored in files (pieces: (path, offset, bytes) in order) to target and append\n"
             "the codes, in one call without the GIL. Returns (written, (min, max, has_nan), code_min, scale);\n"
             "written is False, and nothing appended, for NaN/Inf with uint8/uint16 or NaN with refuse_nan.")
        .def("append_file_bytes", &writer_append_file_bytes, py::arg("pieces"),
             "Append the bytes of pieces ((path, offset, bytes) in order) as they are, without the GIL.")
        .def("finish", [](ShardWriter& w) {
            py::gil_scoped_release release;
            w.finish();
        })
        .def("abort", [](ShardWriter& w) {
            py::gil_scoped_release release;
            w.abort();
        }, "Wait for a write in flight and discard the rest (before cleaning up a failed output).");
    m.def("ceiling_widen", &ceiling_widen_py, py::arg("codes"), py::arg("out"), QSHARD_ISA_THREADS);
}
