#pragma once
// cli.hpp: the command-line conventions every kite program follows (programs only; not part of
// the library).
//
//   int main(int argc, char** argv) {
//       kite::cli::parser cli("kite-flat-search", "exact nearest-neighbour search over .npy/.fvecs vectors");
//       auto& base = cli.positional<std::string>("BASE", "base vectors (.npy or .fvecs)");
//       auto& k = cli.option<std::size_t>("--k", "K", "neighbours per query", 5).range(1, 1 << 20);
//       auto& f16 = cli.flag("--f16", "keep a float16 scan copy");
//       return kite::cli::run(cli, argc, argv, [&] { ...; return 0; });
//   }
//
// - `--help` / `-h` prints the usage and exits 0;
// - a usage error (unknown option, missing or malformed value, a number out of range, a choice
//   not offered) prints one line naming the option and the value, and exits 2;
// - any other exception escaping the body (kite::error, std::bad_alloc, ...) prints
//   "<program>: error: <what>" and exits 1. Nothing aborts.
//
// Numbers are parsed whole (std::from_chars: no trailing text, no sign for unsigned types, no
// silent wrap-around: "-1" is not 2^64 - 1), and floating-point values must be finite.

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <deque>
#include <exception>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

namespace kite::cli {

/// A malformed command line; the message names the option and the value.
class usage_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

namespace detail {

struct help_requested {};

template <class T>
std::string show(const T& v) {
    std::ostringstream os;
    if constexpr (std::is_same_v<T, bool>) {
        os << (v ? "true" : "false");
    } else {
        os << v;
    }
    return os.str();
}

/// Parses `text` as a T; throws usage_error naming `what`.
template <class T>
T parse_value(std::string_view what, std::string_view text) {
    const auto bad = [&](const char* expected) -> usage_error {
        return usage_error(std::string(what) + ": expected " + expected + ", got '" + std::string(text) + "'");
    };
    if constexpr (std::is_same_v<T, std::string>) {
        return std::string(text);
    } else if constexpr (std::is_same_v<T, std::filesystem::path>) {
        if (text.empty()) throw bad("a path");
        return std::filesystem::path(std::string(text));
    } else if constexpr (std::is_integral_v<T>) {
        T v{};
        const char* end = text.data() + text.size();
        const char* first = text.data();
        if (std::is_unsigned_v<T> && !text.empty() && text.front() == '+') ++first;
        const auto [p, ec] = std::from_chars(first, end, v);
        if (ec == std::errc::result_out_of_range)
            throw usage_error(std::string(what) + ": " + std::string(text) + " is out of range (at most " +
                              show(+std::numeric_limits<T>::max()) + ")");
        if (ec != std::errc() || p != end || text.empty())
            throw bad(std::is_unsigned_v<T> ? "a whole number >= 0" : "a whole number");
        return v;
    } else if constexpr (std::is_floating_point_v<T>) {
        T v{};
        const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
        if (ec != std::errc() || p != text.data() + text.size() || text.empty() || !std::isfinite(v))
            throw bad("a finite number");
        return v;
    } else {
        static_assert(sizeof(T) == 0, "kite::cli: options are strings, paths, integers or floating-point numbers");
    }
}

struct slot {
    std::string name;     // "--steps" or the metavariable of a positional ("K")
    std::string metavar;  // "N" (empty for flags)
    std::string help;
    std::string default_text;
    bool is_flag = false, positional = false, required = false, seen = false;
    std::function<void(std::string_view)> set;
};

}  // namespace detail

/// One option or positional argument of type T; the reference stays valid for the parser's life.
template <class T>
class arg {
public:
    /// The value: the default until the command line sets it.
    const T& operator*() const noexcept { return value_; }
    const T* operator->() const noexcept { return &value_; }
    const T& value() const noexcept { return value_; }
    /// True when the command line gave it.
    bool given() const noexcept { return slot_->seen; }

    /// Refuses values outside [lo, hi] (numbers only).
    arg& range(T lo, T hi) {
        static_assert(std::is_arithmetic_v<T>, "kite::cli: range() applies to numbers");
        auto* s = slot_;
        T* v = &value_;
        auto parse = s->set;
        s->set = [s, v, parse, lo, hi](std::string_view text) {
            parse(text);
            if (*v < lo || *v > hi)
                throw usage_error(s->name + ": expected a value in [" + detail::show(lo) + ", " + detail::show(hi) +
                                  "], got '" + std::string(text) + "'");
        };
        s->help += " [" + detail::show(lo) + ".." + detail::show(hi) + "]";
        return *this;
    }
    /// Refuses values other than these (strings only).
    arg& choices(std::vector<std::string> allowed) {
        static_assert(std::is_same_v<T, std::string>, "kite::cli: choices() applies to strings");
        auto* s = slot_;
        T* v = &value_;
        std::string list;
        for (const auto& c : allowed) list += (list.empty() ? "" : "|") + c;
        s->set = [s, v, allowed, list](std::string_view text) {
            for (const auto& c : allowed)
                if (text == c) {
                    *v = c;
                    return;
                }
            throw usage_error(s->name + ": expected one of " + list + ", got '" + std::string(text) + "'");
        };
        s->help += " (" + list + ")";
        return *this;
    }
    /// The command line must give it.
    arg& required() {
        slot_->required = true;
        if (!slot_->positional) slot_->help += " (required)";
        return *this;
    }

private:
    friend class parser;
    arg(T def, detail::slot* s) : value_(std::move(def)), slot_(s) {}
    T value_;
    detail::slot* slot_;
};

/// Declares a program's options, parses argv, prints --help.
class parser {
public:
    parser(std::string program, std::string summary) : program_(std::move(program)), summary_(std::move(summary)) {}
    parser(const parser&) = delete;
    parser& operator=(const parser&) = delete;

    const std::string& program() const noexcept { return program_; }

    /// An option `--name VALUE` (also `--name=VALUE`).
    template <class T>
    arg<T>& option(std::string name, std::string metavar, std::string help, T def = T{}) {
        auto& s = add_slot(std::move(name), std::move(metavar), std::move(help), false);
        s.default_text = default_text(def);
        return bind<T>(s, std::move(def));
    }
    /// A flag `--name` (no value).
    bool& flag(std::string name, std::string help) {
        auto& s = add_slot(std::move(name), "", std::move(help), false);
        s.is_flag = true;
        flags_.push_back(std::make_unique<bool>(false));
        bool* b = flags_.back().get();
        s.set = [b](std::string_view) { *b = true; };
        return *b;
    }
    /// A positional argument, required unless it has a default (`optional_default`).
    template <class T>
    arg<T>& positional(std::string metavar, std::string help, std::optional<T> optional_default = std::nullopt) {
        auto& s = add_slot(metavar, metavar, std::move(help), true);
        s.required = !optional_default.has_value();
        if (optional_default) s.default_text = default_text(*optional_default);
        return bind<T>(s, optional_default.value_or(T{}));
    }
    /// A paragraph printed after the option list by --help.
    void epilog(std::string text) { epilog_ = std::move(text); }

    /// Parses argv[1..argc): throws usage_error, or detail::help_requested for --help.
    void parse(int argc, char** argv) {
        std::size_t next_positional = 0;
        bool options_done = false;
        for (int i = 1; i < argc; ++i) {
            const std::string_view a = argv[i];
            if (!options_done && (a == "--help" || a == "-h")) throw detail::help_requested{};
            if (!options_done && a == "--") {
                options_done = true;
                continue;
            }
            const bool looks_numeric = a.size() > 1 && a[0] == '-' && (std::isdigit(static_cast<unsigned char>(a[1])) || a[1] == '.');
            if (!options_done && a.size() > 1 && a[0] == '-' && !looks_numeric) {
                const auto eq = a.find('=');
                const std::string name(a.substr(0, eq));
                detail::slot* s = find(name);
                if (!s) throw usage_error("unknown option " + name);
                if (s->is_flag) {
                    if (eq != std::string_view::npos) throw usage_error(name + " takes no value");
                    s->set({});
                } else if (eq != std::string_view::npos) {
                    s->set(a.substr(eq + 1));
                } else {
                    if (i + 1 >= argc) throw usage_error(name + " needs a value (" + s->metavar + ")");
                    s->set(argv[++i]);
                }
                s->seen = true;
                continue;
            }
            while (next_positional < slots_.size() && !slots_[next_positional].positional) ++next_positional;
            if (next_positional >= slots_.size())
                throw usage_error("unexpected argument '" + std::string(a) + "'");
            slots_[next_positional].set(a);
            slots_[next_positional].seen = true;
            ++next_positional;
        }
        for (const auto& s : slots_)
            if (s.required && !s.seen)
                throw usage_error(s.positional ? "missing " + s.name + " (" + s.help + ")"
                                               : "missing required option " + s.name);
    }

    /// The --help text.
    std::string usage() const {
        std::string u = "usage: " + program_;
        for (const auto& s : slots_)
            if (s.positional) u += s.required ? " " + s.name : " [" + s.name + "]";
        bool any_option = false;
        for (const auto& s : slots_) any_option |= !s.positional;
        if (any_option) u += " [options]";
        u += "\n\n" + summary_ + "\n";
        std::string pos, opt;
        for (const auto& s : slots_) {
            std::string left = s.positional ? s.name : s.name + (s.is_flag ? "" : " " + s.metavar);
            std::string line = "  " + left;
            line += left.size() + 2 < 26 ? std::string(26 - left.size() - 2, ' ') : "\n" + std::string(26, ' ');
            line += s.help;
            if (!s.default_text.empty() && !s.is_flag) line += " (default " + s.default_text + ")";
            (s.positional ? pos : opt) += line + "\n";
        }
        if (!pos.empty()) u += "\narguments:\n" + pos;
        u += "\noptions:\n" + opt + "  -h, --help              print this help and exit\n";
        if (!epilog_.empty()) u += "\n" + epilog_ + "\n";
        return u;
    }

private:
    template <class T>
    static std::string default_text(const T& v) {
        if constexpr (std::is_same_v<T, std::filesystem::path>) {
            return v.string();
        } else {
            return detail::show(v);
        }
    }
    detail::slot& add_slot(std::string name, std::string metavar, std::string help, bool positional) {
        slots_.push_back({});
        auto& s = slots_.back();
        s.name = std::move(name);
        s.metavar = std::move(metavar);
        s.help = std::move(help);
        s.positional = positional;
        return s;
    }
    template <class T>
    arg<T>& bind(detail::slot& s, T def) {
        auto a = std::unique_ptr<arg<T>>(new arg<T>(std::move(def), &s));
        T* v = &a->value_;
        const std::string name = s.name;
        s.set = [v, name](std::string_view text) { *v = detail::parse_value<T>(name, text); };
        auto& ref = *a;
        args_.push_back(std::shared_ptr<void>(a.release(), [](void* p) { delete static_cast<arg<T>*>(p); }));
        return ref;
    }
    detail::slot* find(const std::string& name) {
        for (auto& s : slots_)
            if (!s.positional && s.name == name) return &s;
        return nullptr;
    }

    std::string program_, summary_, epilog_;
    std::deque<detail::slot> slots_;  // deque: slot addresses stay valid
    std::vector<std::shared_ptr<void>> args_;
    std::vector<std::unique_ptr<bool>> flags_;
};

/// Parses the command line and runs `body` (returning the exit status) with the conventions
/// of the file comment: --help -> 0, usage errors -> 2, any exception -> 1, with a message.
template <class Body>
int run(parser& cli, int argc, char** argv, Body&& body) {
    try {
        cli.parse(argc, argv);
    } catch (const detail::help_requested&) {
        std::fputs(cli.usage().c_str(), stdout);
        return 0;
    } catch (const usage_error& e) {
        std::fprintf(stderr, "%s: %s\nRun '%s --help' for usage.\n", cli.program().c_str(), e.what(),
                     cli.program().c_str());
        return 2;
    }
    try {
        return body();
    } catch (const usage_error& e) {
        std::fprintf(stderr, "%s: %s\nRun '%s --help' for usage.\n", cli.program().c_str(), e.what(),
                     cli.program().c_str());
        return 2;
    } catch (const std::bad_alloc&) {
        std::fprintf(stderr, "%s: error: out of memory\n", cli.program().c_str());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: error: %s\n", cli.program().c_str(), e.what());
        return 1;
    }
}

}  // namespace kite::cli
