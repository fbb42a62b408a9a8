#!/usr/bin/perl
# status.pl - the CGI response header block from Perl: Status, repeated
# headers, a redirect, and a line on stderr (it lands in the backend's
# error log at WARN level).
#
#   /cgi-bin/status.pl?code=404     a 404 page
#   /cgi-bin/status.pl?go=1         302 to /cgi-bin/hello.sh
#   /cgi-bin/status.pl?name=<b>     greets, HTML-escaped
use strict;
use warnings;

my %q;
for my $pair (split /&/, $ENV{QUERY_STRING} // '') {
    my ($k, $v) = split /=/, $pair, 2;
    next unless defined $k && length $k;
    for ($k, $v) {
        next unless defined;
        tr/+/ /;
        s/%([0-9A-Fa-f]{2})/chr(hex($1))/ge;
    }
    $q{$k} = $v // '';
}
$| = 1;    # stream: every print goes out at once

if ($q{go}) {
    print "Location: /cgi-bin/hello.sh\n\n";    # no Status: 302
    exit 0;
}
my $code = ($q{code} // '') =~ /^([2-5][0-9][0-9])$/ ? $1 : 200;
print STDERR "status.pl: answering $code\n" if $code >= 400;

my $name = $q{name} // 'world';
$name =~ s/([&<>"'])/sprintf('&#%d;', ord($1))/ge;

print "Status: $code\n";
print "Content-Type: text/html; charset=utf-8\n";
print "Set-Cookie: first=1; Path=/\n";
print "Set-Cookie: second=2; Path=/\n";
print "\n";
print "<!DOCTYPE html>\n<p>Hello, $name! (status $code, method ",
    $ENV{REQUEST_METHOD}, ")</p>\n";
